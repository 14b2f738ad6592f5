package easytier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier/wire"
)

// errPeerClosed marks an orderly close by the node (WS Close frame).
var errPeerClosed = errors.New("closed by node")

// tcpConn frames EasyTier packets with a u32 length prefix. A small read
// buffer gets the prefix and a ping-sized frame in one syscall (syscalls
// dominate a probe's CPU) while keeping memory low with thousands in flight.
// A read cut short by the read deadline keeps what it has of a frame in
// the buffer, so the session can wait on the conn itself (session.go).
type tcpConn struct {
	c    net.Conn
	rbuf []byte // rbuf[r:w] is read and not yet returned
	r, w int
	at   time.Time // arrival of the data the last read returned
	buf  []byte    // frames written and not yet flushed
}

// tcpReadBuf is the read buffer's starting size; a larger frame grows it.
const tcpReadBuf = 512

// dialTCP connects to the first address that answers, recording the connect time.
func dialTCP(ctx context.Context, addrs []netip.Addr, port int, obs *Observation) (packetConn, error) {
	c, err := dialStream(ctx, addrs, port, obs, true)
	if err != nil {
		return nil, err
	}
	return newTCPConn(ctx, c), nil
}

// newTCPConn wraps c (Go's TCP conns have TCP_NODELAY set already, so
// each packet leaves at once) and has the kernel stamp what it receives.
// Writes are bounded by ctx's deadline; reads by the deadline the session
// sets before each one (never later than ctx's).
func newTCPConn(ctx context.Context, c net.Conn) *tcpConn {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetWriteDeadline(dl)
	}
	c = newStampedConn(c)
	return &tcpConn{c: c, rbuf: make([]byte, tcpReadBuf)}
}

// dialStream opens a TCP connection, trying each address in turn; direct
// dials with dialDirect where it can (the conn then has stamps on), else
// with net.Dialer.
func dialStream(ctx context.Context, addrs []netip.Addr, port int, obs *Observation, direct bool) (net.Conn, error) {
	obs.Stage = StageConnect
	// No TCP keepalive: a probe lasts seconds, so the four setsockopt
	// calls that enabling it costs per connection buy nothing.
	d := net.Dialer{KeepAlive: -1}
	var lastErr error
	start := time.Now()
	for _, a := range addrs {
		addr := net.JoinHostPort(a.String(), strconv.Itoa(port))
		obs.Address = addr
		var c net.Conn
		err := errNoDirect
		if direct {
			c, err = dialDirect(ctx, netip.AddrPortFrom(a, uint16(port)))
		}
		if err == errNoDirect {
			c, err = d.DialContext(ctx, "tcp", addr)
		}
		if err == nil {
			obs.Timings.Connect = time.Since(start)
			return c, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	obs.Timings.Connect = time.Since(start)
	return nil, fmt.Errorf("dialing %s: %w", obs.Address, lastErr)
}

// write queues pkt; flush sends what is queued in one syscall. The
// session flushes before it waits for the node (session.go), so what it
// sends in answer to one read leaves in one segment.
func (t *tcpConn) write(pkt []byte) error {
	t.buf = wire.AppendTCPFrame(t.buf, pkt)
	return nil
}

// flush sends what write queued.
func (t *tcpConn) flush() error {
	if len(t.buf) == 0 {
		return nil
	}
	_, err := t.c.Write(t.buf)
	t.buf = t.buf[:0]
	return err
}

// read returns the next frame and the arrival of its last byte: the
// kernel's stamp of the read that completed it, which is never earlier
// (a read may bring later segments too) and never later than now. At the
// read deadline it returns a timeout and keeps a partial frame for the
// next call.
func (t *tcpConn) read() ([]byte, time.Time, error) {
	for {
		if t.w-t.r >= 4 {
			n, err := wire.TCPFrameLen([4]byte(t.rbuf[t.r : t.r+4]))
			if err != nil {
				return nil, time.Time{}, err
			}
			if end := t.r + 4 + n; end <= t.w {
				pkt := append([]byte(nil), t.rbuf[t.r+4:end]...)
				t.r = end
				return pkt, t.at, nil
			} else if end > len(t.rbuf) {
				// Make room for the whole frame: move it to the front,
				// into a larger buffer if it needs one.
				nb := t.rbuf
				if 4+n > len(nb) {
					nb = make([]byte, 4+n)
				}
				t.w = copy(nb, t.rbuf[t.r:t.w])
				t.r, t.rbuf = 0, nb
			}
		} else if t.r > 0 {
			t.w = copy(t.rbuf, t.rbuf[t.r:t.w])
			t.r = 0
		}
		m, err := t.c.Read(t.rbuf[t.w:])
		if m > 0 {
			t.w += m
			t.at = arrivedVia(t.c)
		}
		if err != nil {
			if t.w > t.r && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // a hang-up inside a frame
			}
			return nil, time.Time{}, err
		}
	}
}

func (t *tcpConn) setReadDeadline(d time.Time) error { return t.c.SetReadDeadline(d) }

func (t *tcpConn) close() { _ = t.c.Close() }

// ready reports whether a whole frame is buffered: the next read returns
// it without a syscall.
func (t *tcpConn) ready() bool {
	if t.w-t.r < 4 {
		return false
	}
	n, err := wire.TCPFrameLen([4]byte(t.rbuf[t.r : t.r+4]))
	return err != nil || t.r+4+n <= t.w // a bad length fails at once too
}
