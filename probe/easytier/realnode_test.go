package easytier_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe"
	"github.com/neouptime/neo-uptime-node/probe/easytier"
	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
	"github.com/neouptime/neo-uptime-node/probe/easytier/wire"
)

var capture = flag.Bool("capture", false, "rewrite wire/testdata/real_*.txt from a real node")

const (
	confNet    = "conf-net"
	confSecret = "conf-secret-7f3a"
	confHost   = "conformance-node"
)

// liveForeign counts the node's foreign networks that currently have peers,
// as its own API reports them.
func liveForeign(t *testing.T, n *easytiertest.RealNode) int {
	t.Helper()
	var fn map[string]struct {
		Peers []any `json:"peers"`
	}
	if err := n.Query("foreign", &fn); err != nil {
		t.Fatal(err)
	}
	c := 0
	for _, v := range fn {
		if len(v.Peers) > 0 {
			c++
		}
	}
	return c
}

// allPeerIDs lists the node's peers in its own network and in every
// foreign network it relays.
func allPeerIDs(t *testing.T, n *easytiertest.RealNode) []uint32 {
	t.Helper()
	ids, err := n.PeerIDs()
	if err != nil {
		t.Fatal(err)
	}
	var fn map[string]struct {
		Peers []struct {
			PeerID uint32 `json:"peer_id"`
		} `json:"peers"`
	}
	if err := n.Query("foreign", &fn); err != nil {
		t.Fatal(err)
	}
	for _, v := range fn {
		for _, p := range v.Peers {
			ids = append(ids, p.PeerID)
		}
	}
	return ids
}

type recorder struct {
	mu      sync.Mutex
	scheme  string
	packets []string
}

func (r *recorder) add(dir string, pkt []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var frame []byte
	switch r.scheme {
	case "tcp":
		frame = wire.AppendTCPFrame(nil, pkt)
	case "udp":
		frame = wire.AppendUDP(nil, 0x11223344, wire.UDPData, pkt)
	default:
		frame = pkt
	}
	r.packets = append(r.packets, dir+" "+hex.EncodeToString(frame))
}

func TestConformance_RealNode(t *testing.T) {
	node := easytiertest.StartReal(t, easytiertest.RealConfig{NetworkName: confNet, NetworkSecret: confSecret, Hostname: confHost})
	// A second real node joins as a foreign network, so the relay has a
	// foreign-network count to report.
	easytiertest.StartReal(t, easytiertest.RealConfig{NetworkName: "tenant-net", NetworkSecret: "tenant", Hostname: "tenant", Peers: []string{node.URL("tcp")}})
	// Wait until the node's route table (what it pushes to peers) lists the
	// tenant, not just its live foreign-network manager.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var infos map[string]any
		if err := node.Query("finfos", &infos); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(infos)
		if liveForeign(t, node) == 1 && strings.Contains(string(b), "tenant-net") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant node never reached the route table: %s", b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	wantVersion, _, _ := strings.Cut(node.Version, "-")

	cases := []struct {
		name, network, secret string
		wantErr               error
		wantClass             probe.Class
		wantReason, wantMode  string
	}{
		{"right_secret", confNet, confSecret, nil, probe.ClassOK, easytier.ReasonOK, "same"},
		{"wrong_secret", confNet, "not-the-secret", easytier.ErrWrongSecret, probe.ClassProtocol, easytier.ReasonWrongSecret, "same"},
		{"no_secret", confNet, "", easytier.ErrWrongSecret, probe.ClassProtocol, easytier.ReasonWrongSecret, "same"},
		// Last: a foreign prober over udp lingers on the node for seconds
		// and would change the live foreign-network count seen above.
		{"foreign_network", "prober-foreign-net", "prober", nil, probe.ClassOK, easytier.ReasonOK, "foreign"},
	}
	var probers []uint32
	for _, tc := range cases {
		for _, scheme := range []string{"tcp", "udp", "ws", "wss"} {
			t.Run(scheme+"/"+tc.name, func(t *testing.T) {
				rec := &recorder{scheme: scheme}
				opts := easytier.Options{
					NetworkName: tc.network, NetworkSecret: tc.secret, RouteWait: 4 * time.Second,
					OnSend: func(p []byte) { rec.add(">", p) },
					OnRecv: func(p []byte) { rec.add("<", p) },
				}
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				var sent [][]byte
				opts.OnSend = func(p []byte) { rec.add(">", p); sent = append(sent, append([]byte(nil), p...)) }
				obs, err := easytier.Probe(ctx, node.URL(scheme), opts)
				assertAllowed(t, sent)
				probers = append(probers, obs.PeerID)
				if !errors.Is(err, tc.wantErr) && !(err == nil && tc.wantErr == nil) {
					t.Fatalf("Probe err = %v, want %v", err, tc.wantErr)
				}
				if got := probe.Classify(err); got != tc.wantClass {
					t.Errorf("Classify(%v) = %s, want %s", err, got, tc.wantClass)
				}
				if obs.Reason != tc.wantReason || obs.Mode != tc.wantMode {
					t.Errorf("reason, mode = %s, %s; want %s, %s", obs.Reason, obs.Mode, tc.wantReason, tc.wantMode)
				}
				if obs.Timings.Handshake <= 0 {
					t.Errorf("handshake time = %v, want > 0", obs.Timings.Handshake)
				}
				if tc.wantErr != nil {
					return
				}
				if l := obs.LatencyUS(); l <= 0 || l > 100_000 {
					t.Errorf("latency = %dµs, want in (0, 100ms] on loopback", l)
				}
				if len(obs.SamplesUS) != 4 || obs.Lost != 0 {
					t.Errorf("samples = %v, lost %d; want 4 and 0", obs.SamplesUS, obs.Lost)
				}
				if obs.Node == nil {
					t.Fatalf("no node info (%s)", obs.NodeMissed)
				}
				if obs.Node.Version != wantVersion || obs.Node.FullVersion != node.Version {
					t.Errorf("version = %s (%s), want %s (%s)", obs.Node.Version, obs.Node.FullVersion, wantVersion, node.Version)
				}
				wantHost := confHost
				if tc.wantMode == "foreign" {
					wantHost = "PublicServer_" + confHost
				}
				if obs.Node.Hostname != wantHost || obs.Node.IsPublicServer != (tc.wantMode == "foreign") {
					t.Errorf("hostname, public = %s, %v; want %s, %v", obs.Node.Hostname, obs.Node.IsPublicServer, wantHost, tc.wantMode == "foreign")
				}
				if tc.wantMode == "same" {
					if live := liveForeign(t, node); obs.Node.ForeignWithPeers != live {
						t.Errorf("foreign networks with peers = %d, node reports %d", obs.Node.ForeignWithPeers, live)
					}
					if !obs.Node.ForeignKnown || obs.Node.ForeignNetworks < 1 || obs.Node.Cipher != wire.CipherAES128GCM {
						t.Errorf("foreign networks = %d (known %v), cipher %q; want >= 1, aes-gcm", obs.Node.ForeignNetworks, obs.Node.ForeignKnown, obs.Node.Cipher)
					}
				}
				if *capture && tc.name == "right_secret" {
					path := filepath.Join("wire", "testdata", "real_"+scheme+".txt")
					body := fmt.Sprintf("# %s exchange with EasyTier %s (%s, secret %q); > sent, < received\n%s\n",
						scheme, node.Version, confNet, confSecret, strings.Join(rec.packets, "\n"))
					if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
	// The node survives and forgets every prober: tcp and ws at once, udp
	// after its ping-loss rule fires (there is no close message on udp).
	if !node.Alive() {
		t.Fatal("node is not running after the probes")
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		left := slices.DeleteFunc(allPeerIDs(t, node), func(id uint32) bool { return !slices.Contains(probers, id) })
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node still has prober peers %v 30s after the probes", left)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestConformance_SecureModeNode(t *testing.T) {
	node := easytiertest.StartReal(t, easytiertest.RealConfig{NetworkName: "secure-net", NetworkSecret: "secure", Hostname: "secure-node", SecureMode: true})
	for _, scheme := range []string{"tcp", "ws", "wss", "udp"} {
		t.Run(scheme, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			obs, err := easytier.Probe(ctx, node.URL(scheme), easytier.Options{NetworkName: "secure-net", NetworkSecret: "secure", PingTimeout: time.Second})
			if !errors.Is(err, easytier.ErrSecureModeRequired) || obs.Reason != easytier.ReasonSecureModeRequired {
				t.Errorf("Probe = %v (reason %s), want %v", err, obs.Reason, easytier.ErrSecureModeRequired)
			}
			if got := probe.Classify(err); got != probe.ClassProtocol {
				t.Errorf("Classify(%v) = %s, want protocol", err, got)
			}
		})
	}
	if !node.Alive() {
		t.Fatal("secure-mode node is not running after the probes")
	}
}

// A real node's handling of a udp probe that starts over (session.go):
// with our handshake or the node's reply lost once, the probe still joins,
// on a new session and under a new peer id, and gets the node's route
// info. (Under the same peer id the node, v2.6.4, kept the accepted old
// connection as that peer's default and sent its route sync there, into
// the void.) The node forgets every prober peer, old sessions' included,
// as it does any udp peer.
func TestConformance_RealNodeUDPHandshakeLost(t *testing.T) {
	node := easytiertest.StartReal(t, easytiertest.RealConfig{NetworkName: confNet, NetworkSecret: confSecret, Hostname: confHost})
	wantVersion, _, _ := strings.Cut(node.Version, "-")
	var probers []uint32
	for _, tc := range []struct {
		name   string
		faults easytiertest.RelayFaults
	}{
		{"ours_lost", easytiertest.RelayFaults{DropProberHandshakes: 1}},
		{"reply_lost", easytiertest.RelayFaults{DropNodeHandshakes: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := easytiertest.RelayTo(t, node.URL("udp"), tc.faults)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			var sent [][]byte
			obs, err := easytier.Probe(ctx, relay.URL(), easytier.Options{NetworkName: confNet, NetworkSecret: confSecret,
				RouteWait: 4 * time.Second, OnSend: func(p []byte) { sent = append(sent, append([]byte(nil), p...)) }})
			assertAllowed(t, sent)
			probers = append(probers, obs.PeerID)
			if err != nil {
				t.Fatalf("probe = %v (%s)", err, obs.Reason)
			}
			if obs.HandshakeResent != 1 || len(obs.SamplesUS) != 4 || obs.Lost != 0 {
				t.Errorf("started over %d times, samples %v, lost %d; want 1, 4, 0", obs.HandshakeResent, obs.SamplesUS, obs.Lost)
			}
			if obs.Node == nil || obs.Node.Version != wantVersion {
				t.Errorf("node info %+v (%s), want version %s", obs.Node, obs.NodeMissed, wantVersion)
			}
		})
	}
	if !node.Alive() {
		t.Fatal("node is not running after the probes")
	}
	// The node has no peers but the probers, those that joined and those
	// left behind by sessions started over.
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := allPeerIDs(t, node)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node still has peers %v 30s after the probes (the probes joined as %v)", left, probers)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
