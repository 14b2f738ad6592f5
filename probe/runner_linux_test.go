package probe

import (
	"context"
	"testing"

	"github.com/neouptime/neo-uptime-node/probe/easytier"
	"github.com/neouptime/neo-uptime-node/probe/internal/fdtable"
)

func fdTableSize(t *testing.T) int {
	t.Helper()
	n, err := fdtable.Size()
	if err != nil || n == 0 {
		t.Fatalf("descriptor table size: %d, %v", n, err)
	}
	return n
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
