package easytier

import (
	"time"

	"github.com/neouptime/neo-uptime-node/probe/internal/rxstamp"
)

// rxStamper is a conn that keeps the kernel's receive stamp of the data
// its last read returned (zero when it has none).
type rxStamper interface{ lastRx() time.Time }

// arrivedVia is the arrival time of data just read from c: the kernel's
// stamp when c keeps one, else now (see package rxstamp for why).
func arrivedVia(c any) time.Time {
	if st, ok := c.(rxStamper); ok {
		return rxstamp.Arrival(st.lastRx())
	}
	return time.Now()
}
