package easytier

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
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
func dialWS(ctx context.Context, t Target, addrs []netip.Addr, opts Options, obs *Observation) (packetConn, error) {
	var tlsDone time.Time
	var raw net.Conn
	netDial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, err := dialStream(ctx, addrs, t.Port, obs)
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
	return &wsConn{c: c, raw: raw}, nil
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
