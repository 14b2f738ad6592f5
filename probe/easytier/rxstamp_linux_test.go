package easytier

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/internal/rxstamp"
)

// The kernel's stamp of a datagram lies between the send and the read.
func TestRxStamp_UDPDatagramStampedBetweenSendAndRead(t *testing.T) {
	srv, cl := stampedUDPPair(t)
	buf, oob := make([]byte, 64), make([]byte, rxstamp.OOBSize)
	stampingOn(t)
	for i := 0; i < 3; i++ {
		before := time.Now().Round(0)
		if _, err := cl.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		n, stamp, err := readUDPStamped(srv, buf, oob)
		after := time.Now().Round(0)
		if err != nil || string(buf[:n]) != "ping" {
			t.Fatalf("read %q, %v", buf[:n], err)
		}
		if stamp.IsZero() {
			t.Fatal("no kernel stamp on the datagram")
		}
		if stamp.Before(before) || stamp.After(after) {
			t.Fatalf("stamp %v outside [%v, %v]", stamp, before, after)
		}
		// Read 5 ms after the send: the stamp is the arrival, not the read.
		if after.Sub(stamp) < 4*time.Millisecond {
			t.Fatalf("stamp %v only %v before the read: a read time, not the arrival", stamp, after.Sub(stamp))
		}
	}
}

// stampedUDPPair is a loopback UDP server socket with receive stamps on
// and a client connected to it, both closed when the test ends.
func stampedUDPPair(t *testing.T) (srv, cl *net.UDPConn) {
	t.Helper()
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if !rxstamp.Enable(srv) {
		t.Fatal("SO_TIMESTAMPNS refused on a UDP socket")
	}
	cl, err = net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return srv, cl
}

// stampingOn returns once the kernel stamps data on arrival, and keeps it
// so for the rest of the test. The kernel turns receive stamping on a
// moment after the first socket asks (a deferred static key), and off
// after the last one closes; meanwhile it stamps data when it is read,
// which is no worse than a read time but is not what these tests check.
func stampingOn(t *testing.T) {
	t.Helper()
	srv, cl := stampedUDPPair(t) // srv stays open, keeping stamping on
	buf, oob := make([]byte, 64), make([]byte, rxstamp.OOBSize)
	for i := 0; i < 100; i++ {
		if _, err := cl.Write([]byte("warm")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
		_, stamp, err := readUDPStamped(srv, buf, oob)
		if err != nil {
			t.Fatal(err)
		}
		if !stamp.IsZero() && time.Now().Round(0).Sub(stamp) >= time.Millisecond {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the kernel never stamped a datagram on arrival")
}

// A stamped TCP conn reads like the plain one and keeps the stamp of the
// last data it returned; a timeout and the peer's close surface as usual.
func TestRxStamp_TCPConnStampsReadsAndKeepsErrors(t *testing.T) {
	stampingOn(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := newStampedConn(raw)
	defer c.Close()
	st, ok := c.(rxStamper)
	if !ok {
		t.Fatal("a loopback TCP conn was not stamped")
	}
	peer := <-accepted
	buf := make([]byte, 16)
	for _, msg := range []string{"one", "two"} {
		before := time.Now().Round(0)
		if _, err := peer.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		n, err := c.Read(buf)
		after := time.Now().Round(0)
		if err != nil || string(buf[:n]) != msg {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, msg)
		}
		stamp := st.lastRx()
		if stamp.Before(before) || stamp.After(after) || after.Sub(stamp) < 4*time.Millisecond {
			t.Fatalf("%s: stamp %v not the arrival in [%v, %v]", msg, stamp, before, after)
		}
		at := arrivedVia(c)
		if d := time.Since(at); d < 4*time.Millisecond || d > time.Second {
			t.Fatalf("arrival %v ago, want the stamp's ~5 ms", d)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err = c.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	peer.Close()
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want EOF", err)
	}
}

// The keeper socket opens with the first holder, stays through a gap
// shorter than the linger, and closes a linger after the last release.
func TestHoldRxStamping_KeeperLingersThenCloses(t *testing.T) {
	waitClosed := func(within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for keeperOpen() {
			if time.Now().After(deadline) {
				t.Fatalf("keeper still open %v after the last release", within)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitClosed(stampLinger + 2*time.Second) // from earlier tests
	r1 := holdRxStamping()
	r2 := holdRxStamping()
	if !keeperOpen() {
		t.Fatal("no keeper socket while probes hold stamping")
	}
	r1()
	r1() // a second call is a no-op, not a second release
	time.Sleep(stampLinger + 200*time.Millisecond)
	if !keeperOpen() {
		t.Fatal("keeper closed while a probe still holds it")
	}
	r2()
	time.Sleep(stampLinger / 2)
	r3 := holdRxStamping() // a probe inside the linger: the same socket
	time.Sleep(stampLinger)
	if !keeperOpen() {
		t.Fatal("keeper closed by an earlier linger while a probe holds it")
	}
	r3()
	waitClosed(stampLinger + 2*time.Second)
}
