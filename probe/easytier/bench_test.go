package easytier_test

import (
	"context"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier"
	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
)

// BenchmarkProbe runs whole probes (connect, handshake, pings, route sync,
// close) against the fake node over loopback. cpu-us/op is the CPU of the
// prober and the fake node together, an upper bound on the prober's own.
func BenchmarkProbe(b *testing.B) {
	for _, tc := range []struct {
		name    string
		samples int
		scheme  string
	}{{"tcp/1ping", 1, "tcp"}, {"tcp/4pings", 4, "tcp"}, {"udp/4pings", 4, "udp"}, {"ws/4pings", 4, "ws"}} {
		b.Run(tc.name, func(b *testing.B) {
			f, err := easytiertest.StartFake(&easytiertest.Fake{NetworkName: "n", NetworkSecret: "s", Foreign: []string{"a"}, Encrypt: "aes-gcm"})
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			url := map[string]string{"tcp": f.TCPURL(), "udp": f.UDPURL(), "ws": f.WSURL()}[tc.scheme]
			opts := easytier.Options{NetworkName: "n", NetworkSecret: "s", Samples: tc.samples, Interval: time.Microsecond}
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				obs, err := easytier.Probe(ctx, url, opts)
				cancel()
				if err != nil || obs.Node == nil {
					b.Fatalf("probe: %v (%s)", err, obs.NodeMissed)
				}
			}
			b.StopTimer()
			if cpu1 := cpuTime(); cpu1 > 0 {
				b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
			}
		})
	}
}
