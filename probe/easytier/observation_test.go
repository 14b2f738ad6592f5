package easytier

import (
	"encoding/json"
	"testing"
	"time"
)

func TestLatencyUS_LeavesOutTheFirstSampleWhenOthersCameBack(t *testing.T) {
	many := make([]int64, 20)
	for i := range many {
		many[i] = int64(1000 + i) // the last 15: 1005 … 1019
	}
	for _, tc := range []struct {
		name    string
		samples []int64
		want    int64
	}{
		{"none", nil, 0},
		{"only the first", []int64{1700}, 1700},
		{"first late", []int64{51900, 50400, 50420, 50380}, 50400},
		{"first early", []int64{150, 300, 320}, 310},
		{"integer mean", []int64{9, 1, 2}, 1},
		{"last 15 of the rest", many, 1012},
	} {
		o := Observation{SamplesUS: tc.samples}
		if got := o.LatencyUS(); got != tc.want {
			t.Errorf("%s: LatencyUS(%v) = %d, want %d", tc.name, tc.samples, got, tc.want)
		}
	}
}

func TestTimings_JSONInWholeMicroseconds(t *testing.T) {
	tm := Timings{DNS: 1500 * time.Nanosecond, Connect: 2 * time.Millisecond, TLS: 0, Upgrade: 999 * time.Nanosecond, Handshake: 3*time.Millisecond + 1700*time.Nanosecond}
	const want = `{"connect_us":2000,"dns_us":1,"handshake_us":3001,"tls_us":0,"upgrade_us":0}`
	for name, v := range map[string]any{"Timings": tm, "TimingsUS": tm.US()} {
		b, err := json.Marshal(v)
		if err != nil || string(b) != want {
			t.Errorf("%s: %s, %v; want %s", name, b, err, want)
		}
	}
}
