package easytier_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe"
	"github.com/neouptime/neo-uptime-node/probe/easytier"
	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
	"github.com/neouptime/neo-uptime-node/probe/easytier/wire"
)

// openFDs counts the process's descriptors, less the one that keeps the
// kernel's receive stamping on for a second after a probe (rxstamp_linux.go).
func openFDs(t *testing.T) int {
	t.Helper()
	keeper := easytier.StampKeeperFDs()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents) - keeper
}

// probeGoroutines lists goroutines still running prober code.
func probeGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var left []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "probe/easytier.(*session)") || strings.Contains(g, "probe/easytier.dial") ||
			strings.Contains(g, "probe/easytier.(*tcpConn)") || strings.Contains(g, "probe/easytier.(*udpConn)") ||
			strings.Contains(g, "probe/easytier.(*wsConn)") {
			left = append(left, g)
		}
	}
	return left
}

// assertNoLeaks waits briefly for cleanup, then fails if the probe left a
// goroutine or a descriptor behind.
func assertNoLeaks(t *testing.T, fdsBefore int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		g, fds := probeGoroutines(), openFDs(t)
		if len(g) == 0 && fds <= fdsBefore {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leaked after probe: %d goroutines, fds %d > %d\n%s", len(g), fds, fdsBefore, strings.Join(g, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProbe_FakeNodeFaults(t *testing.T) {
	type want struct {
		class  probe.Class
		reason string
	}
	cases := []struct {
		behavior   easytiertest.Behavior
		name       string
		transports []string
		want       want
	}{
		{easytiertest.Healthy, "healthy", []string{"tcp", "udp", "ws"}, want{probe.ClassOK, easytier.ReasonOK}},
		{easytiertest.AcceptSilence, "accept_silence", []string{"tcp", "ws"}, want{probe.ClassTimeout, easytier.ReasonHandshakeTimeout}},
		{easytiertest.AcceptSilence, "blackhole", []string{"udp"}, want{probe.ClassTimeout, ""}},
		{easytiertest.Reset, "reset", []string{"tcp", "ws"}, want{probe.ClassProtocol, ""}},
		{easytiertest.Garbage, "garbage", []string{"tcp"}, want{probe.ClassProtocol, ""}},
		{easytiertest.Garbage, "garbage", []string{"ws"}, want{probe.ClassProtocol, ""}},
		// Like a node, the udp reader drops datagrams that are not well formed.
		{easytiertest.Garbage, "garbage", []string{"udp"}, want{probe.ClassTimeout, easytier.ReasonHandshakeTimeout}},
		{easytiertest.FrameTooShort, "frame_too_short", []string{"tcp"}, want{probe.ClassProtocol, easytier.ReasonBadFrame}},
		{easytiertest.FrameTooLong, "frame_too_long", []string{"tcp"}, want{probe.ClassProtocol, easytier.ReasonBadFrame}},
		{easytiertest.SlowDrip, "slow_drip", []string{"tcp"}, want{probe.ClassTimeout, easytier.ReasonHandshakeTimeout}},
		{easytiertest.WrongSecret, "wrong_secret", []string{"tcp", "udp", "ws"}, want{probe.ClassProtocol, easytier.ReasonWrongSecret}},
		{easytiertest.CloseAfterHandshake, "close_after_handshake", []string{"tcp", "ws"}, want{probe.ClassProtocol, easytier.ReasonSecureModeRequired}},
		{easytiertest.NoPong, "no_pong", []string{"tcp", "ws"}, want{probe.ClassProtocol, easytier.ReasonSecureModeRequired}},
		{easytiertest.UnknownTypes, "unknown_types", []string{"tcp", "udp", "ws"}, want{probe.ClassOK, easytier.ReasonOK}},
		{easytiertest.HugeRoute, "huge_route", []string{"tcp", "udp", "ws"}, want{probe.ClassOK, easytier.ReasonOK}},
		{easytiertest.TextMessage, "text_message", []string{"ws"}, want{probe.ClassProtocol, easytier.ReasonBadFrame}},
	}
	for _, tc := range cases {
		for _, tr := range tc.transports {
			t.Run(tc.name+"/"+tr, func(t *testing.T) {
				f, err := easytiertest.StartFake(&easytiertest.Fake{NetworkName: "n", NetworkSecret: "s", Behavior: tc.behavior, Foreign: []string{"a", "b"}, Encrypt: wire.CipherAES128GCM})
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				url := map[string]string{"tcp": f.TCPURL(), "udp": f.UDPURL(), "ws": f.WSURL()}[tr]
				fds := openFDs(t)
				const budget = 2500 * time.Millisecond
				ctx, cancel := context.WithTimeout(context.Background(), budget)
				defer cancel()
				start := time.Now()
				var sent [][]byte
				obs, err := easytier.Probe(ctx, url, easytier.Options{NetworkName: "n", NetworkSecret: "s", Samples: 3, Interval: 50 * time.Millisecond, PingTimeout: 500 * time.Millisecond, HandshakeTimeout: 2 * time.Second,
					OnSend: func(p []byte) { sent = append(sent, append([]byte(nil), p...)) }})
				assertAllowed(t, sent)
				took := time.Since(start)
				if took > budget+250*time.Millisecond {
					t.Errorf("probe took %v, beyond its %v deadline", took, budget)
				}
				if got := probe.Classify(err); got != tc.want.class {
					t.Errorf("Classify(%v) = %s, want %s", err, got, tc.want.class)
				}
				if tc.want.reason != "" && obs.Reason != tc.want.reason {
					t.Errorf("reason = %q, want %q (err %v)", obs.Reason, tc.want.reason, err)
				}
				if tc.want.class == probe.ClassOK {
					if obs.Node == nil || obs.Node.Hostname != "fake-node" || obs.Node.ForeignNetworks != 2 {
						t.Errorf("node info = %+v (%s), want fake-node with 2 foreign networks", obs.Node, obs.NodeMissed)
					}
					if len(obs.SamplesUS) != 3 {
						t.Errorf("samples = %v, want 3", obs.SamplesUS)
					}
				}
				assertNoLeaks(t, fds)
			})
		}
	}
}

// assertAllowed checks that every packet the prober emitted on this path is
// in the allowed set: handshake, ping, pong, and the route-sync RPC pair.
func assertAllowed(t *testing.T, sent [][]byte) {
	t.Helper()
	for i, p := range sent {
		if err := wire.CheckOutbound(p); err != nil {
			t.Errorf("packet %d outside the allowed set: %v (%x)", i, err, p)
		}
		h, _, _ := wire.ParsePacket(p)
		switch h.Type {
		case wire.TypeHandShake, wire.TypePing, wire.TypePong, wire.TypeRPCReq, wire.TypeRPCResp:
		default:
			t.Errorf("packet %d has type %d", i, h.Type)
		}
	}
}

func TestProbe_RefusedAndUnsupported(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	port := easytiertest.FreePortBlock(t)
	for _, tc := range []struct {
		url  string
		want probe.Class
		err  error
	}{
		{"tcp://127.0.0.1:" + itoa(port), probe.ClassRefused, nil},
		{"ws://127.0.0.1:" + itoa(port) + "/", probe.ClassRefused, nil},
		{"udp://127.0.0.1:" + itoa(port), probe.ClassRefused, nil},
		{"quic://127.0.0.1:11012", probe.ClassProtocol, easytier.ErrUnsupportedProtocol},
		{"wg://127.0.0.1:11011", probe.ClassProtocol, easytier.ErrUnsupportedProtocol},
		{"faketcp://127.0.0.1:11013", probe.ClassProtocol, easytier.ErrUnsupportedProtocol},
		{"tcp://name.invalid:11010", probe.ClassDNS, nil},
		{"tcp://127.0.0.1:99999", probe.ClassProtocol, easytier.ErrBadTarget},
	} {
		fds := openFDs(t)
		start := time.Now()
		_, err := easytier.Probe(ctx, tc.url, easytier.Options{})
		if got := probe.Classify(err); got != tc.want {
			t.Errorf("Classify(Probe(%s) = %v) = %s, want %s", tc.url, err, got, tc.want)
		}
		if tc.err != nil && !errors.Is(err, tc.err) {
			t.Errorf("Probe(%s) = %v, want %v", tc.url, err, tc.err)
		}
		if tc.err != nil && time.Since(start) > 50*time.Millisecond {
			t.Errorf("Probe(%s) took %v, want an immediate answer", tc.url, time.Since(start))
		}
		assertNoLeaks(t, fds)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestProbe_WSSVerification(t *testing.T) {
	f, err := easytiertest.StartFake(&easytiertest.Fake{NetworkName: "n", TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	probeWith := func(cfg *tls.Config) (easytier.Observation, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return easytier.Probe(ctx, f.WSURL(), easytier.Options{NetworkName: "n", Samples: 1, TLS: cfg})
	}
	// Default: like EasyTier, a self-signed certificate is accepted.
	if obs, err := probeWith(nil); err != nil || obs.Timings.TLS <= 0 {
		t.Errorf("unverified wss = %v (tls %v), want ok", err, obs.Timings.TLS)
	}
	// Verifying against the right CA: ok.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(f.WSCertPEM())
	if _, err := probeWith(&tls.Config{RootCAs: pool}); err != nil {
		t.Errorf("wss verified with its CA = %v, want ok", err)
	}
	// Verifying against another CA: a protocol failure at the tls stage.
	obs, err := probeWith(&tls.Config{RootCAs: x509.NewCertPool()})
	if got := probe.Classify(err); got != probe.ClassProtocol || obs.Stage != easytier.StageTLS {
		t.Errorf("wss with a wrong CA = %v, class %s, stage %s; want protocol at tls", err, got, obs.Stage)
	}
}

// TestProbe_UDPReorderDuplicateLoss runs udp probes through a relay that
// reorders, duplicates or drops the node's datagrams.
func TestProbe_UDPReorderDuplicateLoss(t *testing.T) {
	f, err := easytiertest.StartFake(&easytiertest.Fake{NetworkName: "n", NetworkSecret: "s", Foreign: []string{"a"}, Encrypt: "aes-gcm", Behavior: easytiertest.HugeRoute})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tc := range []struct {
		name      string
		faults    easytiertest.RelayFaults
		wantLost  int
		wantRoute bool
	}{
		{"duplicate", easytiertest.RelayFaults{Duplicate: true}, 0, true},
		{"reorder", easytiertest.RelayFaults{Reorder: true}, 0, true},
		{"lose every 2nd pong", easytiertest.RelayFaults{DropPongsOf: 2}, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fds := openFDs(t)
			relay, err := easytiertest.StartUDPRelay(strings.TrimPrefix(f.UDPURL(), "udp://"), tc.faults)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var sent [][]byte
			obs, err := easytier.Probe(ctx, relay.URL(), easytier.Options{NetworkName: "n", NetworkSecret: "s", Samples: 6,
				Interval: 20 * time.Millisecond, PingTimeout: 300 * time.Millisecond,
				OnSend: func(p []byte) { sent = append(sent, append([]byte(nil), p...)) }})
			if err != nil {
				t.Fatalf("probe = %v (%s)", err, obs.Reason)
			}
			if obs.Sent != 6 || obs.Lost != tc.wantLost || len(obs.SamplesUS) != 6-tc.wantLost {
				t.Errorf("sent %d, lost %d, samples %d; want 6, %d, %d (duplicates must not count twice)", obs.Sent, obs.Lost, len(obs.SamplesUS), tc.wantLost, 6-tc.wantLost)
			}
			if (obs.Node != nil) != tc.wantRoute || (obs.Node != nil && obs.Node.ForeignNetworks != 1) {
				t.Errorf("node info = %+v (%s)", obs.Node, obs.NodeMissed)
			}
			assertAllowed(t, sent)
			relay.Close() // its sockets are the test's, not the prober's
			assertNoLeaks(t, fds)
		})
	}
}

// A probe waits on its conn's read deadline, not on a select: cancelling
// its context (loop mode's SIGTERM, the job's early stop) must still end
// it at once, whether it waits for the handshake reply or between pings.
func TestProbe_CancelEndsTheWait(t *testing.T) {
	for _, tc := range []struct {
		name     string
		behavior easytiertest.Behavior
		measured bool // the probe had a sample when cancelled
	}{
		{"handshake", easytiertest.AcceptSilence, false},
		{"between_pings", easytiertest.Healthy, true},
	} {
		for _, tr := range []string{"tcp", "udp", "ws"} {
			t.Run(tc.name+"/"+tr, func(t *testing.T) {
				f, err := easytiertest.StartFake(&easytiertest.Fake{NetworkName: "n", NetworkSecret: "s", Behavior: tc.behavior})
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				url := map[string]string{"tcp": f.TCPURL(), "udp": f.UDPURL(), "ws": f.WSURL()}[tr]
				fds := openFDs(t)
				ctx, cancel := context.WithCancel(context.Background()) // no deadline
				defer cancel()
				type result struct {
					obs easytier.Observation
					err error
				}
				done := make(chan result, 1)
				go func() {
					obs, err := easytier.Probe(ctx, url, easytier.Options{NetworkName: "n", NetworkSecret: "s", Samples: 2,
						Interval: time.Minute, PingTimeout: time.Minute, HandshakeTimeout: time.Minute, RouteWait: -1})
					done <- result{obs, err}
				}()
				time.Sleep(300 * time.Millisecond)
				cancel()
				var r result
				select {
				case r = <-done:
				case <-time.After(10 * time.Second):
					t.Fatal("the cancelled probe is still waiting")
				}
				if tc.measured {
					if r.err != nil || len(r.obs.SamplesUS) != 1 || !r.obs.Accepted {
						t.Errorf("cancelled between pings: err %v, samples %v, accepted %v; want the one sample reported", r.err, r.obs.SamplesUS, r.obs.Accepted)
					}
				} else if !errors.Is(r.err, context.Canceled) {
					t.Errorf("cancelled before the reply: err %v, want context.Canceled", r.err)
				}
				assertNoLeaks(t, fds)
			})
		}
	}
}

// A udp handshake whose reply does not come starts over on a new session
// (a new conn_id, SYN/SACK, then the handshake again): one lost datagram,
// ours or the node's, must not lose the probe. Other transports never
// start over: their kernel retransmits.
func TestProbe_UDPHandshakeLostStartsOver(t *testing.T) {
	f, err := easytiertest.StartFake(&easytiertest.Fake{NetworkName: "n", NetworkSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close) // after the parallel subtests
	for _, tc := range []struct {
		name        string
		faults      easytiertest.RelayFaults
		wantErr     error
		wantResent  int
		minDuration time.Duration
	}{
		{"ours lost", easytiertest.RelayFaults{DropProberHandshakes: 1}, nil, 1, time.Second},
		{"reply lost", easytiertest.RelayFaults{DropNodeHandshakes: 1}, nil, 1, time.Second},
		{"reply lost twice", easytiertest.RelayFaults{DropNodeHandshakes: 2}, nil, 2, 2 * time.Second},
		{"every reply lost", easytiertest.RelayFaults{DropNodeHandshakes: 100}, easytier.ErrHandshakeTimeout, 2, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			relay := easytiertest.RelayTo(t, f.UDPURL(), tc.faults)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var sent [][]byte
			start := time.Now()
			obs, err := easytier.Probe(ctx, relay.URL(), easytier.Options{NetworkName: "n", NetworkSecret: "s", Samples: 2,
				Interval: 10 * time.Millisecond, RouteWait: -1,
				OnSend: func(p []byte) { sent = append(sent, append([]byte(nil), p...)) }})
			took := time.Since(start)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("probe = %v (%s), want %v", err, obs.Reason, tc.wantErr)
			}
			if obs.HandshakeResent != tc.wantResent {
				t.Errorf("started over %d times, want %d", obs.HandshakeResent, tc.wantResent)
			}
			if tc.wantErr == nil && (len(obs.SamplesUS) != 2 || !obs.Accepted) {
				t.Errorf("samples %v, accepted %v; want 2 samples from the new session", obs.SamplesUS, obs.Accepted)
			}
			if took < tc.minDuration {
				t.Errorf("took %v, want at least %v: started over before the reply was overdue", took, tc.minDuration)
			}
			handshakes := 0
			for _, p := range sent {
				if h, _, err := wire.ParsePacket(p); err == nil && h.Type == wire.TypeHandShake {
					handshakes++
				}
			}
			if handshakes != tc.wantResent+1 {
				t.Errorf("sent %d handshakes, want %d", handshakes, tc.wantResent+1)
			}
			assertAllowed(t, sent)
		})
	}
	t.Run("tcp never starts over", func(t *testing.T) {
		t.Parallel()
		silent, err := easytiertest.StartFake(&easytiertest.Fake{NetworkName: "n", NetworkSecret: "s", Behavior: easytiertest.AcceptSilence})
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		obs, err := easytier.Probe(ctx, silent.TCPURL(), easytier.Options{NetworkName: "n", NetworkSecret: "s", HandshakeTimeout: 2500 * time.Millisecond})
		if !errors.Is(err, easytier.ErrHandshakeTimeout) || obs.HandshakeResent != 0 {
			t.Errorf("probe = %v, started over %d times; want a handshake timeout and none", err, obs.HandshakeResent)
		}
	})
}
