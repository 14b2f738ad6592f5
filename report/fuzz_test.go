package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParsePeers feeds arbitrary bodies to the peer-list decoder: it must
// never panic, and every peer it keeps must be probe-able.
func FuzzParsePeers(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "peers_*.json"))
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte(`{"code":200,"data":{"peers":[{"id":1e300,"host":"::"}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var env envelope
		if err := json.Unmarshal(body, &env); err != nil {
			return
		}
		peers, _, err := parsePeers(env.Data)
		if err != nil {
			return
		}
		seen := map[int64]bool{}
		for _, p := range peers {
			if seen[p.ID] {
				t.Fatalf("duplicate id %d kept", p.ID)
			}
			seen[p.ID] = true
			if !p.Unsupported && (p.Port < 1 || p.Port > 65535) {
				t.Fatalf("peer %d kept with port %d", p.ID, p.Port)
			}
			if checkHost(p.Host) != nil {
				t.Fatalf("peer %d kept with host %q", p.ID, p.Host)
			}
		}
	})
}
