package easytier

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
)

// dialDirect connects to ap with the socket calls a tcp probe needs and
// no others, and returns the conn with kernel receive stamps on.
//
// net.Dialer is general: it parses the address it is given again, races
// address families, asks the kernel for both ends' addresses once
// connected, and arms a cancel hook and deadline timers around the
// connect. With a thousand probes at once that was ~8 % of a run's CPU. Here: socket,
// TCP_NODELAY (as Go's conns have it) and SO_TIMESTAMPNS, connect; then
// the socket waits on the runtime poller for the handshake, bounded by
// ctx, asking connect again first and at each wake-up: 0 or EISCONN is
// connected, EALREADY still going, anything else the connection's error.
// On the bench machine's loopback the handshake was never done when
// connect returned, and always by the first ask, after os.NewFile's two
// system calls (perf's syscall counts: two connects a probe).
//
// errNoDirect means this path does not apply (an IPv6 zone): the caller
// dials with net.Dialer.
func dialDirect(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	a := ap.Addr()
	if a.Zone() != "" {
		return nil, errNoDirect
	}
	raddr := net.TCPAddrFromAddrPort(ap)
	var sa syscall.Sockaddr
	family := syscall.AF_INET
	if a.Is4() {
		sa = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	} else {
		family = syscall.AF_INET6
		sa = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	}
	fail := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: raddr, Err: err}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
	if err != nil {
		return nil, fail(os.NewSyscallError("socket", err))
	}
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
		syscall.Close(fd)
		return nil, fail(os.NewSyscallError("setsockopt", err))
	}
	stamped := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1) == nil
	connected := false
	switch err := syscall.Connect(fd, sa); err {
	case nil:
		connected = true
	case syscall.EINPROGRESS, syscall.EALREADY, syscall.EINTR:
	default:
		syscall.Close(fd)
		return nil, fail(os.NewSyscallError("connect", err))
	}
	// Nonblocking: os.NewFile puts it on the runtime poller.
	f := os.NewFile(uintptr(fd), "tcp "+raddr.String())
	rc, err := f.SyscallConn()
	if err == nil && !connected {
		err = waitConnected(ctx, f, rc, sa)
	}
	if err != nil {
		f.Close()
		return nil, fail(err)
	}
	dc := &directConn{File: f, raddr: raddr}
	if !stamped {
		return dc, nil
	}
	return newStamped(dc, rc), nil
}

var (
	errNoDirect   = errors.New("not for a direct dial")
	errConnecting = errors.New("connect in progress")
)

// connectOutcome asks connect again: nil once connected, errConnecting
// while the handshake is under way, else the connection's error.
func connectOutcome(fd int, sa syscall.Sockaddr) error {
	for {
		switch err := syscall.Connect(fd, sa); err {
		case nil, syscall.EISCONN:
			return nil
		case syscall.EALREADY, syscall.EINPROGRESS:
			return errConnecting
		case syscall.EINTR:
		default:
			return err
		}
	}
}

// waitConnected waits until f's connect has an outcome, or ctx ends. It
// asks first (usually the handshake is done by then, and nothing more is
// needed); then it waits on the poller, whose readiness from before the
// wait is not relied on: the wait asks again before it parks. A wait
// leaves f's writes bounded by ctx's deadline (as newTCPConn sets them).
func waitConnected(ctx context.Context, f *os.File, rc syscall.RawConn, sa syscall.Sockaddr) error {
	cerr := errConnecting
	check := func(fd uintptr) bool {
		cerr = connectOutcome(int(fd), sa)
		return cerr != errConnecting
	}
	if err := rc.Control(func(fd uintptr) { check(fd) }); err != nil {
		return err
	}
	if cerr == errConnecting {
		if dl, ok := ctx.Deadline(); ok {
			_ = f.SetWriteDeadline(dl)
		}
		stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(pastDeadline) })
		err := rc.Write(check)
		stop()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return context.DeadlineExceeded
			}
			return err
		}
	}
	if cerr != nil {
		return os.NewSyscallError("connect", cerr)
	}
	return nil
}

// directConn is a connected TCP socket on the runtime poller (dialDirect).
type directConn struct {
	*os.File
	raddr *net.TCPAddr
}

// LocalAddr asks the kernel (only error messages want it).
func (c *directConn) LocalAddr() net.Addr {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	var sa syscall.Sockaddr
	_ = rc.Control(func(fd uintptr) { sa, _ = syscall.Getsockname(int(fd)) })
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}
	case *syscall.SockaddrInet6:
		return &net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}
	}
	return nil
}

func (c *directConn) RemoteAddr() net.Addr { return c.raddr }
