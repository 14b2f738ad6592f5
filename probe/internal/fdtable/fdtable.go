// Package fdtable makes room in the process's file descriptor table
// before a burst of sockets needs it.
//
// Linux keeps a process's descriptors in one table that starts with 64
// slots and doubles when a new descriptor does not fit (64, 128, 256,
// 512, 1024, 2048 …). In a process with more than one thread, and every
// Go program has several, each doubling waits for an RCU grace period
// before the old table can go (expand_fdtable's synchronize_rcu): about
// 12 ms on the project's bench machine, during which every thread that
// needs a descriptor past the old table's end waits too, and the CPUs
// sit idle. A run that opened a thousand sockets at once went through
// four of those, one after the other. Reserve grows the table once, to
// the size the burst will need, so that it waits for one grace period,
// while the sockets that fit in the old table go ahead.
package fdtable

// Reserve makes the descriptor table hold n more descriptors than are
// open now (counted from the lowest free number), and at most the
// RLIMIT_NOFILE soft limit. It returns the highest descriptor number it
// made room for, or 0 where it did nothing: where they fit in the 64
// slots every table starts with, or on a system where this does not
// apply. It may block for a grace period: call it on a goroutine of its
// own. It never closes or replaces a descriptor in use.
func Reserve(n int) (int, error) { return reserve(n) }

// initialSlots is the table every process starts with (BITS_PER_LONG).
const initialSlots = 64

// Size returns how many descriptors the table holds now (FDSize in
// /proc/self/status), or 0 where that is not known.
func Size() (int, error) { return size() }
