// Package oserr tells the socket errors a probe classifies by apart on
// every system: on Windows a refused connect is WSAECONNREFUSED, which
// errors.Is does not match with syscall.ECONNREFUSED.
package oserr

import "errors"

// Refused reports a connection the other side refused.
func Refused(err error) bool { return isAny(err, refused) }

// Unreachable reports a host or network that could not be reached, or a
// local address that cannot be used.
func Unreachable(err error) bool { return isAny(err, unreachable) }

// Reset reports a connection the other side reset or closed under a write.
func Reset(err error) bool { return isAny(err, reset) }

func isAny(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
