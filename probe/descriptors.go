package probe

import "github.com/neouptime/neo-uptime-node/probe/internal/fdtable"

// ReserveDescriptors makes room in the process's descriptor table for n
// probes' sockets open at once beside what is open now, in one growth
// of the table, on a goroutine of its own; wait returns when it is
// done. Runner.Run calls it for its targets.
//
// On Linux the table doubles when a new descriptor does not fit, and in
// a process with several threads each doubling waits for an RCU grace
// period (~12 ms on the bench machine) with every socket that needs the
// new room waiting behind it: a thousand probes went through four of
// those one after the other, with the CPUs idle (probe/internal/fdtable).
// A run whose sockets fit in the table it has grows nothing. Elsewhere
// it does nothing.
func ReserveDescriptors(n int) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = fdtable.Reserve(n + fdMargin)
	}()
	return func() { <-done }
}

// fdMargin is what a run opens beside its probes' sockets while they
// are open: the backend's connections (16 by default).
const fdMargin = 16
