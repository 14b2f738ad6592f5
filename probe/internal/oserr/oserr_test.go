package oserr

import (
	"errors"
	"net"
	"os"
	"testing"
)

// TestOnThisSystem: the errors a real socket returns here are told apart
// (a refused connect on loopback), and wrapped ones too.
func TestOnThisSystem(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = net.Dial("tcp", addr)
	if err == nil {
		t.Skip("the closed port was taken again")
	}
	if !Refused(err) || Unreachable(err) || Reset(err) {
		t.Errorf("dial to a closed port: %v: refused %v, unreachable %v, reset %v",
			err, Refused(err), Unreachable(err), Reset(err))
	}
	for _, e := range []error{nil, os.ErrDeadlineExceeded, errors.New("refused")} {
		if Refused(e) || Unreachable(e) || Reset(e) {
			t.Errorf("%v matched", e)
		}
	}
}
