package easytier

import "time"

// oobSize fits one SCM_TIMESTAMPNS control message.
const oobSize = 64

// rxStamper is a conn that keeps the kernel's receive stamp of the data
// its last read returned (zero when it has none).
type rxStamper interface{ lastRx() time.Time }

// arrivedVia is the arrival time of data just read from c: the kernel's
// stamp when c keeps one, else now.
func arrivedVia(c any) time.Time {
	if st, ok := c.(rxStamper); ok {
		return arrival(st.lastRx())
	}
	return time.Now()
}

// Arrival times come from the kernel where it can give them. A pong's
// user-space read happens after the runtime wakes up for it, which on an
// idle process costs ~0.05–0.2 ms here (the median was 0.11 ms on the
// project's VM, for tcp and udp alike): time that is not on the network
// but would be added to every RTT, and more so on a Lambda's fractional
// vCPU. With SO_TIMESTAMPNS the kernel stamps each received segment or
// datagram; a read reports the stamp of the last one it returned, so for
// a packet it is never earlier than the packet's arrival, and never later
// than the read itself. (The kernel switches stamping on a moment after a
// socket first asks; until then it stamps data when it is read, which is
// what a read time gives anyway.)

// arrival turns the kernel's receive stamp (wall clock; zero when there is
// none) into a time on Go's monotonic clock: the stamp's distance from
// now, taken back from now. A stamp from the future or over a second old
// (the wall clock stepped) is not trusted and the read time is used.
func arrival(kernel time.Time) time.Time {
	now := time.Now()
	if kernel.IsZero() {
		return now
	}
	d := now.Round(0).Sub(kernel)
	if d < 0 || d > time.Second {
		return now
	}
	return now.Add(-d)
}
