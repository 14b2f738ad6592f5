package probe

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/neouptime/neo-uptime-node/probe/easytier"
)

// fdTableSize is the process's descriptor table size (FDSize).
func fdTableSize(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("FDSize:")); ok {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no FDSize in /proc/self/status")
	return 0
}

// A run makes room in the descriptor table for all its probes' sockets
// at once, before they need it (probe/internal/fdtable), and is done
// with it when Run returns.
func TestRunner_ReservesDescriptorsForItsProbes(t *testing.T) {
	n := 2 * fdTableSize(t) // more probes than the table has slots
	r := Runner{Concurrency: n, Probe: func(ctx context.Context, t Target) (easytier.Observation, error) {
		// Opens nothing: only the run itself can have grown the table.
		return easytier.Observation{}, nil
	}}
	for i, res := range r.Run(context.Background(), make([]Target, n)) {
		if res.Class != ClassOK {
			t.Fatalf("probe %d: %v %v", i, res.Class, res.Err)
		}
	}
	if got := fdTableSize(t); got < n {
		t.Errorf("descriptor table holds %d after a run of %d probes", got, n)
	}
}
