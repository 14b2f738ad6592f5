package easytier

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A direct dial gives a conn that writes, reads with the kernel's stamp,
// knows both ends, and sends each write at once.
func TestDialDirect_ConnectsWithStampsAndNoDelay(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			ln, err := net.Listen(network, map[string]string{"tcp4": "127.0.0.1:0", "tcp6": "[::1]:0"}[network])
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			defer ln.Close()
			stampingOn(t)
			ap := ln.Addr().(*net.TCPAddr).AddrPort()
			c, err := dialDirect(t.Context(), ap)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			peer, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			if _, ok := c.(rxStamper); !ok {
				t.Fatalf("%T: not stamped", c)
			}
			if got := c.RemoteAddr().String(); got != ap.String() {
				t.Errorf("RemoteAddr %s, want %s", got, ap)
			}
			if got, want := c.LocalAddr().String(), peer.RemoteAddr().String(); got != want {
				t.Errorf("LocalAddr %s, want the peer's view %s", got, want)
			}
			var nodelay int
			if err := rawControl(c, func(fd int) { nodelay, err = syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY) }); err != nil {
				t.Fatal(err)
			}
			if nodelay == 0 {
				t.Error("TCP_NODELAY off")
			}

			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 8)
			if n, err := peer.Read(buf); err != nil || string(buf[:n]) != "ping" {
				t.Fatalf("peer read %q, %v", buf[:n], err)
			}
			before := time.Now().Round(0)
			if _, err := peer.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != "pong" {
				t.Fatalf("read %q, %v", buf[:n], err)
			}
			if at := arrivedVia(c); at.Before(before) || time.Since(at) < 4*time.Millisecond {
				t.Fatalf("arrival %v: not the kernel's stamp of the pong (sent at %v)", at, before)
			}
		})
	}
}

// A closed port fails as net.Dialer's would: refused, the same message.
func TestDialDirect_Refused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	_, err = dialDirect(t.Context(), ap)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial to a closed port: %v, want ECONNREFUSED", err)
	}
	if want := "dial tcp " + ap.String() + ": connect: connection refused"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

// fullListener listens with an accept queue of one, and fills it: the
// kernel then drops SYNs to it (the client resends after a second) until
// accept takes the queued connection.
func fullListener(t *testing.T) (ap netip.AddrPort, acceptOne func()) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	ap = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*syscall.SockaddrInet4).Port))
	filler, err := net.Dial("tcp", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })
	return ap, func() {
		nfd, _, err := syscall.Accept(fd)
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { syscall.Close(nfd) })
	}
}

// An unanswered handshake waits until ctx's deadline (a timeout) or its
// cancel; one answered late, after a wait on the poller, connects.
func TestDialDirect_WaitsForTheHandshake(t *testing.T) {
	ap, acceptOne := fullListener(t)

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := dialDirect(ctx, ap)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered handshake: %v, want the deadline", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("gave up after %v, before the deadline", d)
	}
	if !strings.HasPrefix(err.Error(), "dial tcp "+ap.String()+": ") {
		t.Errorf("error %q does not name the dial", err)
	}

	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := dialDirect(ctx, ap); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled during the handshake: %v, want canceled", err)
	}

	// Room in the queue only after the first SYN was dropped: the
	// client's resend a second later connects.
	time.AfterFunc(100*time.Millisecond, acceptOne)
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start = time.Now()
	c, err := dialDirect(ctx, ap)
	if err != nil {
		t.Fatalf("handshake answered late: %v", err)
	}
	defer c.Close()
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("connected after %v: the first SYN was not dropped, so no wait was tested", d)
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("write on the late conn: %v", err)
	}
}

// An IPv6 zone is left to net.Dialer.
func TestDialDirect_ZoneIsNotDirect(t *testing.T) {
	if _, err := dialDirect(t.Context(), netip.MustParseAddrPort("[fe80::1%lo]:11010")); err != errNoDirect {
		t.Fatalf("zoned address: %v, want errNoDirect", err)
	}
}

func rawControl(c net.Conn, f func(fd int)) error {
	var rc syscall.RawConn
	if s, ok := c.(*stampedConn); ok {
		rc = s.rc
	} else {
		var err error
		if rc, err = c.(syscall.Conn).SyscallConn(); err != nil {
			return err
		}
	}
	return rc.Control(func(fd uintptr) { f(int(fd)) })
}
