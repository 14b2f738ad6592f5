package easytier

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier/wire"
	"github.com/neouptime/neo-uptime-node/probe/internal/rxstamp"
)

// udpConn is EasyTier's UDP tunnel: a SYN/SACK exchange, then one
// datagram per packet behind an 8-byte header carrying our conn_id.
type udpConn struct {
	c      *net.UDPConn
	connID uint32
	buf    []byte
	rbuf   []byte
	oob    []byte
}

// synResend is how often the SYN is repeated while waiting for the SACK.
// A node keyed by source address simply recreates the session.
const synResend = 500 * time.Millisecond

// dialUDP opens a connected UDP socket (so ICMP port-unreachable surfaces as
// ECONNREFUSED) and performs the SYN/SACK exchange, timed as "connect".
func dialUDP(ctx context.Context, addrs []netip.Addr, port int, obs *Observation) (packetConn, error) {
	obs.Stage = StageConnect
	addr := netip.AddrPortFrom(addrs[0], uint16(port))
	obs.Address = addr.String()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	// Nodes keep datagrams under 2000 bytes (UDP_DATA_MTU); a larger one is
	// truncated, fails its length check and is dropped, as a node would.
	u := &udpConn{c: c, rbuf: make([]byte, 4096), oob: make([]byte, rxstamp.OOBSize)}
	rxstamp.Enable(c) // kernel receive stamps for pongs
	start := time.Now()
	err = u.syn(ctx, start.Add(3*time.Second)) // EasyTier's own SACK wait
	obs.Timings.Connect = time.Since(start)
	if err != nil {
		c.Close()
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Time{})
	}
	return u, nil
}

// syn starts a session: a new conn_id, then the SYN, repeated every
// synResend until the matching SACK arrives, ctx ends or limit passes.
func (u *udpConn) syn(ctx context.Context, limit time.Time) error {
	var r [12]byte
	_, _ = rand.Read(r[:])
	u.connID = binary.LittleEndian.Uint32(r[:])
	magic := binary.LittleEndian.Uint64(r[4:])
	syn := wire.AppendUDPSyn(nil, u.connID, magic)
	c, addr := u.c, u.c.RemoteAddr()
	// A cancel wakes the wait for the SACK rather than the next resend.
	defer context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(pastDeadline) })()
	if dl, ok := ctx.Deadline(); ok && dl.Before(limit) {
		limit = dl
	}
	for {
		if _, err := c.Write(syn); err != nil {
			return fmt.Errorf("sending syn to %s: %w", addr, err)
		}
		wait := time.Now().Add(synResend)
		if limit.Before(wait) {
			wait = limit
		}
		_ = c.SetReadDeadline(wait)
		for ctx.Err() == nil {
			n, err := c.Read(u.rbuf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return fmt.Errorf("waiting for sack from %s: %w", addr, err)
			}
			if wire.IsSack(u.rbuf[:n], u.connID, magic) {
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for sack from %s: %w", addr, ctx.Err())
		}
		if !time.Now().Before(limit) {
			return fmt.Errorf("waiting for sack from %s: %w: %w", addr, ErrSackTimeout, os.ErrDeadlineExceeded)
		}
	}
}

// restart starts a new session on the same socket, for a handshake whose
// reply has not come: lost on the way there or back, for all the prober
// can tell. A node takes each SYN as a new connection; a connection it had
// accepted before its reply was lost stays until its ping-loss rule fires,
// as any udp probe's does (there is no close on udp). Datagrams of the old
// session that arrive late carry the old conn_id and are skipped.
func (u *udpConn) restart(ctx context.Context, limit time.Time) error {
	return u.syn(ctx, limit)
}

func (u *udpConn) write(pkt []byte) error {
	u.buf = wire.AppendUDP(u.buf[:0], u.connID, wire.UDPData, pkt)
	_, err := u.c.Write(u.buf)
	return err
}

// read returns the next data packet of our connection, skipping datagrams
// that are not ours or not well formed, as a node does.
func (u *udpConn) read() ([]byte, time.Time, error) {
	for {
		n, stamp, err := readUDPStamped(u.c, u.rbuf, u.oob)
		if err != nil {
			return nil, time.Time{}, err
		}
		id, t, body, err := wire.ParseUDP(u.rbuf[:n])
		if err != nil || id != u.connID || t != wire.UDPData || len(body) < wire.HeaderLen {
			continue
		}
		return append([]byte(nil), body...), rxstamp.Arrival(stamp), nil
	}
}

func (u *udpConn) setReadDeadline(d time.Time) error { return u.c.SetReadDeadline(d) }

func (u *udpConn) close() { _ = u.c.Close() }
