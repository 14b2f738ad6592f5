//go:build !linux

package easytiertest

import (
	"net"
	"time"
)

func stampArrivals(*net.UDPConn) {}

// arrival is the read time: no kernel receive stamps on this platform.
func arrival([]byte) time.Time { return time.Now() }
