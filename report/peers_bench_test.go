package report

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// BenchmarkParsePeers decodes a peer list as the backend sends it; the
// list is on the path to a run's first probe.
func BenchmarkParsePeers(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		var sb strings.Builder
		sb.WriteString(`{"peers":[`)
		for i := range n {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"id":%d,"name":"node %d","host":"127.0.%d.%d","port":%d,"protocol":"tcp","network_name":"net","network_secret":"secret"}`,
				i+1, i+1, i/250, i%250+1, 20000+i%1000)
		}
		sb.WriteString(`]}`)
		data := json.RawMessage(sb.String())
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				peers, warns, err := parsePeers(data)
				if err != nil || len(peers) != n || len(warns) != 0 {
					b.Fatalf("%d peers, warnings %v, %v", len(peers), warns, err)
				}
			}
		})
	}
}
