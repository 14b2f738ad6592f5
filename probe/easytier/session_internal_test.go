package easytier

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
)

// A write refused because the node hung up is left to the reader, which
// classifies the hang-up; any other write error ends the probe as before.
func TestWriteErr_HangUpLeftToReader(t *testing.T) {
	hangUps := []error{
		syscall.EPIPE,
		syscall.ECONNRESET,
		&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)},
		&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.ECONNRESET)},
	}
	for _, err := range hangUps {
		if got := writeErr(err); got != nil {
			t.Errorf("writeErr(%v) = %v, want nil (left to the reader)", err, got)
		}
	}
	others := []error{
		errors.New("boom"),
		net.ErrClosed, // our own close, not the node's
		&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.ENOBUFS)},
	}
	for _, err := range others {
		if got := writeErr(err); got != err {
			t.Errorf("writeErr(%v) = %v, want it unchanged", err, got)
		}
	}
	if writeErr(nil) != nil {
		t.Error("writeErr(nil) != nil")
	}
}
