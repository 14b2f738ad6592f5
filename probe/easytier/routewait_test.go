package easytier_test

import (
	"context"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier"
	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
	"github.com/neouptime/neo-uptime-node/probe/easytier/wire"
)

// A real node's first route push sometimes goes astray; it repeats it
// after its 3 s RPC timeout, at ~3.05 s. The default -route-wait must
// still catch it, and a shorter one reports the node info as missing.
func TestProbe_RouteWaitCoversALateFirstPush(t *testing.T) {
	f, err := easytiertest.StartFake(&easytiertest.Fake{NetworkName: "n", NetworkSecret: "s", Foreign: []string{"a"},
		Encrypt: wire.CipherAES128GCM, RouteDelay: 3050 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	probeWith := func(routeWait time.Duration) easytier.Observation {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		obs, err := easytier.Probe(ctx, f.TCPURL(), easytier.Options{NetworkName: "n", NetworkSecret: "s", Samples: 1, RouteWait: routeWait})
		if err != nil {
			t.Fatal(err)
		}
		return obs
	}
	if obs := probeWith(0); obs.Node == nil || !obs.Node.ForeignKnown || obs.Node.ForeignNetworks != 1 {
		t.Errorf("default route wait: node info %+v (missed %q), want it with 1 foreign network", obs.Node, obs.NodeMissed)
	}
	if obs := probeWith(time.Second); obs.Node != nil || obs.NodeMissed != easytier.ReasonNoRouteInfo {
		t.Errorf("1 s route wait: node info %+v, missed %q; want none, %q", obs.Node, obs.NodeMissed, easytier.ReasonNoRouteInfo)
	}
}

// A node without foreign networks never sends a table: the probe waits
// ForeignWait after the node's own info, not the whole RouteWait.
func TestProbe_ForeignWaitCountsFromTheNodesInfo(t *testing.T) {
	f, err := easytiertest.StartFake(&easytiertest.Fake{NetworkName: "n", NetworkSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	obs, err := easytier.Probe(ctx, f.TCPURL(), easytier.Options{NetworkName: "n", NetworkSecret: "s", Samples: 1,
		RouteWait: 6 * time.Second, ForeignWait: 200 * time.Millisecond})
	took := time.Since(start)
	if err != nil || obs.Node == nil {
		t.Fatalf("probe: %v, node %+v", err, obs.Node)
	}
	if obs.Node.ForeignKnown {
		t.Errorf("foreign count known (%d) although the node sent no table", obs.Node.ForeignNetworks)
	}
	if took > 3*time.Second {
		t.Errorf("probe took %v: it waited for the route wait (6 s) instead of 200 ms after the node's info", took)
	}
}
