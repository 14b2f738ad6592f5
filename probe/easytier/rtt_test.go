package easytier_test

import (
	"context"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier"
	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
)

// TestProbe_RTTNeverBelowTheNodesDelay: a node that holds every pong for
// 25 ms cannot be measured closer than that, whatever the arrival stamps
// (kernel or read time) and however packets share reads: a stamp kept
// from an earlier read, or taken before the pong arrived, would show up
// as a sample under 25 ms.
func TestProbe_RTTNeverBelowTheNodesDelay(t *testing.T) {
	const delay = 25 * time.Millisecond
	f, err := easytiertest.StartFake(&easytiertest.Fake{NetworkName: "n", NetworkSecret: "s", Delay: delay})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for tr, url := range map[string]string{"tcp": f.TCPURL(), "udp": f.UDPURL(), "ws": f.WSURL()} {
		t.Run(tr, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// Pings 5 ms apart: several pongs in flight, so reads carry
			// more than one packet at times.
			obs, err := easytier.Probe(ctx, url, easytier.Options{NetworkName: "n", NetworkSecret: "s", Samples: 8, Interval: 5 * time.Millisecond, RouteWait: -1})
			if err != nil {
				t.Fatal(err)
			}
			if len(obs.SamplesUS) != 8 {
				t.Fatalf("samples %v, want 8", obs.SamplesUS)
			}
			for i, us := range obs.SamplesUS {
				if time.Duration(us)*time.Microsecond < delay {
					t.Errorf("sample %d = %d µs, below the node's %v pong delay", i, us, delay)
				}
			}
		})
	}
}
