package easytier

import (
	"bufio"
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
type tcpConn struct {
	c   net.Conn
	r   *bufio.Reader
	buf []byte
}

// dialTCP connects to the first address that answers, recording the connect time.
func dialTCP(ctx context.Context, addrs []netip.Addr, port int, obs *Observation) (packetConn, error) {
	c, err := dialStream(ctx, addrs, port, obs)
	if err != nil {
		return nil, err
	}
	return newTCPConn(ctx, c), nil
}

// newTCPConn wraps c (Go's TCP conns have TCP_NODELAY set already, so
// each packet leaves at once) and has the kernel stamp what it receives.
func newTCPConn(ctx context.Context, c net.Conn) *tcpConn {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	c = newStampedConn(c)
	return &tcpConn{c: c, r: bufio.NewReaderSize(c, 512)}
}

// dialStream opens a TCP connection, trying each address in turn.
func dialStream(ctx context.Context, addrs []netip.Addr, port int, obs *Observation) (net.Conn, error) {
	obs.Stage = StageConnect
	// No TCP keepalive: a probe lasts seconds, so the four setsockopt
	// calls that enabling it costs per connection buy nothing.
	d := net.Dialer{KeepAlive: -1}
	var lastErr error
	start := time.Now()
	for _, a := range addrs {
		addr := net.JoinHostPort(a.String(), strconv.Itoa(port))
		obs.Address = addr
		c, err := d.DialContext(ctx, "tcp", addr)
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

func (t *tcpConn) write(pkt []byte) error {
	t.buf = wire.AppendTCPFrame(t.buf[:0], pkt)
	_, err := t.c.Write(t.buf)
	return err
}

// read returns the next frame and the arrival of its last byte: the
// kernel's stamp of the read that completed it, which is never earlier
// (a read may bring later segments too) and never later than now.
func (t *tcpConn) read() ([]byte, time.Time, error) {
	var prefix [4]byte
	if _, err := io.ReadFull(t.r, prefix[:]); err != nil {
		return nil, time.Time{}, err
	}
	n, err := wire.TCPFrameLen(prefix)
	if err != nil {
		return nil, time.Time{}, err
	}
	pkt := make([]byte, n)
	if _, err := io.ReadFull(t.r, pkt); err != nil {
		return nil, time.Time{}, err
	}
	return pkt, arrivedVia(t.c), nil
}

func (t *tcpConn) close() { _ = t.c.Close() }
