package report

import (
	"syscall"

	"golang.org/x/sys/windows"
)

// refusedErrnos are a refused connect's errors: Windows returns
// WSAECONNREFUSED, which errors.Is does not match with ECONNREFUSED.
var refusedErrnos = []error{syscall.ECONNREFUSED, windows.WSAECONNREFUSED}
