// Package rxstamp reads the kernel's receive stamps (SO_TIMESTAMPNS) of
// data read from a socket, for the prober and for the test relays that
// delay packets by their arrival.
//
// A user-space read happens after the runtime wakes up for the data, which
// on an idle process costs ~0.05–0.2 ms here: time that is not on the
// network. The kernel stamps each received segment or datagram; a read
// reports the stamp of the last one it returned, so for a packet it is
// never earlier than the packet's arrival and never later than the read.
// (The kernel switches stamping on a moment after a socket first asks;
// until then it stamps data when it is read, which is what a read time
// gives anyway.) Elsewhere than Linux there are no stamps: Enable reports
// false and Parse finds none.
package rxstamp

import "time"

// OOBSize fits one SCM_TIMESTAMPNS control message.
const OOBSize = 64

// Arrival turns a kernel stamp (wall clock; zero when there is none) into
// a time on Go's monotonic clock: the stamp's distance from now, taken
// back from now. A stamp from the future or over a second old (the wall
// clock stepped) is not trusted, and the read time, now, is used.
func Arrival(kernel time.Time) time.Time {
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
