//go:build !windows

package oserr

import "syscall"

var (
	refused     = []error{syscall.ECONNREFUSED}
	unreachable = []error{syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EADDRNOTAVAIL}
	reset       = []error{syscall.ECONNRESET, syscall.EPIPE}
)
