//go:build !linux

package easytier

import (
	"net"
	"time"
)

// Elsewhere than Linux, arrival times are read times.

func holdRxStamping() (release func()) { return func() {} }

func keeperOpen() bool { return false }

func newStampedConn(c net.Conn) net.Conn { return c }

func readUDPStamped(c *net.UDPConn, p []byte, _ []byte) (int, time.Time, error) {
	n, err := c.Read(p)
	return n, time.Time{}, err
}
