//go:build !windows

package report

import "syscall"

// refusedErrnos are a refused connect's errors (probe/internal/oserr has
// the prober's set).
var refusedErrnos = []error{syscall.ECONNREFUSED}
