package easytier

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// wsConn carries one EasyTier packet per binary WebSocket message.
type wsConn struct {
	c   *websocket.Conn
	raw net.Conn // the TCP conn under TLS and WebSocket, for receive stamps
}

// maxWSMessage bounds what we read in one message; node packets are small.
const maxWSMessage = 64 << 10

// dialWS connects, does TLS for wss (unverified unless opts.TLS is set, as
// EasyTier does) and the WebSocket upgrade, timing each stage.
func dialWS(ctx context.Context, t Target, addrs []netip.Addr, opts *Options, obs *Observation) (packetConn, error) {
	var tlsDone time.Time
	var raw net.Conn
	netDial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, err := dialStream(ctx, addrs, t.Port, obs, false)
		if err != nil {
			return nil, err
		}
		raw = newStampedConn(c)
		return raw, nil
	}
	d := websocket.Dialer{
		NetDialContext:  netDial,
		ReadBufferSize:  2048, // one node packet; larger messages are read in parts
		WriteBufferSize: 2048,
	}
	if t.Scheme == "wss" {
		cfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // EasyTier nodes use self-signed certs
		if opts.TLS != nil {
			cfg = opts.TLS.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = t.Host
			if _, err := netip.ParseAddr(t.Host); err == nil && opts.TLS == nil {
				// What EasyTier's client sends for IP literals. When we
				// verify, the IP itself must be checked against the SANs.
				cfg.ServerName = "localhost"
			}
		}
		d.NetDialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := netDial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			obs.Stage = StageTLS
			start := time.Now()
			tc := tls.Client(c, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				c.Close()
				obs.Timings.TLS = time.Since(start)
				return nil, fmt.Errorf("tls handshake with %s: %w", obs.Address, err)
			}
			tlsDone = time.Now()
			obs.Timings.TLS = tlsDone.Sub(start)
			return tc, nil
		}
	}
	u := url.URL{Scheme: t.Scheme, Host: net.JoinHostPort(t.Host, strconv.Itoa(t.Port)), Opaque: ""}
	full := u.String() + t.Path
	start := time.Now()
	c, resp, err := d.DialContext(ctx, full, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if obs.Stage == StageConnect {
			return nil, err // dialStream already wrapped it
		}
		if obs.Stage == StageTLS && tlsDone.IsZero() {
			return nil, err
		}
		obs.Stage = StageUpgrade
		if resp != nil {
			obs.Reason = ReasonUpgrade
			return nil, fmt.Errorf("upgrading %s: %w (http %d)", full, ErrUpgrade, resp.StatusCode)
		}
		if errors.Is(err, websocket.ErrBadHandshake) {
			obs.Reason = ReasonUpgrade
			return nil, fmt.Errorf("upgrading %s: %w: %w", full, ErrUpgrade, err)
		}
		return nil, fmt.Errorf("upgrading %s: %w", full, err)
	}
	from := start.Add(obs.Timings.Connect)
	if !tlsDone.IsZero() {
		from = tlsDone
	}
	obs.Timings.Upgrade = time.Since(from)
	c.SetReadLimit(maxWSMessage)
	if dl, ok := ctx.Deadline(); ok {
		_ = c.NetConn().SetDeadline(dl)
	}
	return newPumped(&wsConn{c: c, raw: raw}), nil
}

func (w *wsConn) write(pkt []byte) error {
	return w.c.WriteMessage(websocket.BinaryMessage, pkt)
}

// read returns the next message and, as for tcp, the kernel's stamp of
// the TCP read that completed it.
func (w *wsConn) read() ([]byte, time.Time, error) {
	typ, msg, err := w.c.ReadMessage()
	if err != nil {
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return nil, time.Time{}, fmt.Errorf("%w: %w", errPeerClosed, err)
		}
		return nil, time.Time{}, err
	}
	if typ != websocket.BinaryMessage {
		return nil, time.Time{}, ErrTextMessage
	}
	return msg, arrivedVia(w.raw), nil
}

// close sends a Close frame (bounded to 100 ms) and closes the socket.
func (w *wsConn) close() {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = w.c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(100*time.Millisecond))
	_ = w.c.Close()
}

// blockingConn is a packetConn without read deadlines: a gorilla
// websocket conn fails for good at one, so a wsConn is read through a
// pumped.
type blockingConn interface {
	write(pkt []byte) error
	read() (pkt []byte, at time.Time, err error)
	close()
}

// pumped gives a blockingConn the packetConn contract: a goroutine reads
// it and read waits for the next packet until the deadline. The tcp and
// udp conns need none of this (one goroutine per probe).
type pumped struct {
	blockingConn
	in       chan inbound
	errc     chan error // the pump's last read error
	done     chan struct{}
	mu       sync.Mutex
	deadline time.Time
	kick     chan struct{} // a new deadline was set
	timer    *time.Timer
}

func newPumped(bc blockingConn) *pumped {
	p := &pumped{blockingConn: bc, in: make(chan inbound, 16), errc: make(chan error, 1),
		done: make(chan struct{}), kick: make(chan struct{}, 1)}
	go p.pump()
	return p
}

// pump reads until the conn fails or is closed.
func (p *pumped) pump() {
	defer close(p.done)
	for {
		pkt, at, err := p.blockingConn.read()
		if err != nil {
			p.errc <- err
			return
		}
		p.in <- inbound{pkt: pkt, at: at} // close drains in: never stuck
	}
}

func (p *pumped) setReadDeadline(t time.Time) error {
	p.mu.Lock()
	p.deadline = t
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return nil
}

func (p *pumped) read() ([]byte, time.Time, error) {
	for {
		// Packets read before an error come first, as on the conn.
		select {
		case in := <-p.in:
			return in.pkt, in.at, nil
		default:
		}
		p.mu.Lock()
		dl := p.deadline
		p.mu.Unlock()
		var expired <-chan time.Time
		if !dl.IsZero() {
			wait := time.Until(dl)
			if wait <= 0 {
				return nil, time.Time{}, os.ErrDeadlineExceeded
			}
			if p.timer == nil {
				p.timer = time.NewTimer(wait)
			} else {
				p.timer.Reset(wait)
			}
			expired = p.timer.C
		}
		select {
		case in := <-p.in:
			return in.pkt, in.at, nil
		case err := <-p.errc:
			select {
			case in := <-p.in:
				p.errc <- err // after the packets before it
				return in.pkt, in.at, nil
			default:
			}
			p.errc <- err // every later read fails the same way
			return nil, time.Time{}, err
		case <-expired:
		case <-p.kick:
		}
	}
}

// close closes the conn and waits for the pump to stop.
func (p *pumped) close() {
	p.blockingConn.close()
	for {
		select {
		case <-p.in:
		case <-p.done:
			if p.timer != nil {
				p.timer.Stop()
			}
			return
		}
	}
}
