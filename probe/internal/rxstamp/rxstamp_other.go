//go:build !linux

package rxstamp

import (
	"syscall"
	"time"
)

// Enable reports false: no kernel receive stamps on this platform.
func Enable(syscall.Conn) bool { return false }

// Parse finds no stamp: there are none on this platform.
func Parse([]byte) time.Time { return time.Time{} }
