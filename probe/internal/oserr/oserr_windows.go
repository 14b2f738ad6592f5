package oserr

import (
	"syscall"

	"golang.org/x/sys/windows"
)

var (
	refused     = []error{syscall.ECONNREFUSED, windows.WSAECONNREFUSED}
	unreachable = []error{syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EADDRNOTAVAIL,
		windows.WSAEHOSTUNREACH, windows.WSAENETUNREACH, windows.WSAEADDRNOTAVAIL}
	reset = []error{syscall.ECONNRESET, syscall.EPIPE,
		windows.WSAECONNRESET, windows.WSAECONNABORTED, windows.ERROR_NETNAME_DELETED}
)
