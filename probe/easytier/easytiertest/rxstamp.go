package easytiertest

import (
	"syscall"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/internal/rxstamp"
)

// For harnesses outside package probe (bench/scale's floor) that must time
// a round trip the way the prober does: from the kernel's receive stamp of
// the answer, not from when a goroutine got round to reading it.

// RxStampOOBSize fits the control message a stamped recvmsg returns.
const RxStampOOBSize = rxstamp.OOBSize

// EnableRxStamps asks the kernel to stamp the data c receives; false where
// it cannot (then RxArrival gives read times).
func EnableRxStamps(c syscall.Conn) bool { return rxstamp.Enable(c) }

// RxArrival is when the data of a recvmsg with these control messages
// arrived, on Go's monotonic clock: the kernel's stamp, or now without one.
func RxArrival(oob []byte) time.Time { return rxstamp.Arrival(rxstamp.Parse(oob)) }
