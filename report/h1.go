package report

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// h1Transport carries the status reports: small PUTs to one host, a
// thousand or more in a run. net/http's Transport spends more on each of
// them than the request itself costs: every request is handed to a
// connection's writing goroutine and its answer back from the reading
// one, with a context, a cancel hook and pool bookkeeping around it, and
// over https it speaks HTTP/2, whose framing costs more again. Here the
// caller's goroutine writes the request and reads the answer itself, over
// a pool of HTTP/1.1 keep-alive connections; the bytes on the wire are
// still net/http's own (Request.Write, http.ReadResponse). One report, 16
// in flight, to a backend on loopback (BenchmarkSubmit, two runs, the
// backend's work included): 32–48 → 24–32 µs over http, 53–77 → 29–48
// over https; 65–71 allocations instead of 101–111 (Client.sendStatus
// hands it the report without http.Client). Over https it costs
// one TLS handshake per connection (up to Options.Conns, the later ones
// resuming the first's session) where HTTP/2 would open one: in a
// one-off measurement of the client process alone, about even at 20
// reports and ~80 → ~45 ms of CPU at 1,000 (BenchmarkSubmit/https is the
// repeatable figure).
//
// An idle connection is closed when next looked at if it idled longer
// than idleFor, not by a timer: between the runs of a warm Lambda or of
// loop mode the pool holds at most Options.Conns of them.
//
// It serves only its own scheme and host; anything else (a redirect to
// https on the same host) goes to other. New does not use it where a
// proxy is configured: net/http knows how to talk to one.
type h1Transport struct {
	scheme, host string // the requests it serves: URL.Scheme, URL.Host
	addr         string // what it dials: host:port
	tls          *tls.Config
	dialer       net.Dialer
	idleFor      time.Duration     // longer idle than this: closed, not reused
	slots        chan struct{}     // one per request in flight (Options.Conns)
	other        http.RoundTripper // every request it does not serve

	mu   sync.Mutex
	idle []*h1Conn // most recently used last
}

// h1Conn is one keep-alive connection.
type h1Conn struct {
	nc        net.Conn
	br        *bufio.Reader // reads through the h1Conn, counting
	bw        *bufio.Writer
	got       int64 // bytes read off nc so far
	gotAtSend int64 // got when the current request was sent
	idleSince time.Time
}

func (c *h1Conn) Read(p []byte) (int, error) {
	n, err := c.nc.Read(p)
	c.got += int64(n)
	return n, err
}

// h1IdleFor is how long an idle connection is kept for reuse: shorter
// than the keep-alive of common servers where that is long (nginx 75 s,
// load balancers 60 s); a connection a server closed sooner (Node.js
// closes after 5 s) fails before any answer comes, and the request is
// sent again on a new one (RoundTrip).
const h1IdleFor = 30 * time.Second

func newH1Transport(scheme, host, addr string, tlsConf *tls.Config, conns int, other http.RoundTripper) *h1Transport {
	t := &h1Transport{scheme: scheme, host: host, addr: addr, idleFor: h1IdleFor,
		slots: make(chan struct{}, conns), other: other}
	t.dialer.Timeout = 30 * time.Second
	if scheme == "https" {
		t.tls = tlsConf.Clone()
		if t.tls.ServerName == "" {
			t.tls.ServerName, _, _ = net.SplitHostPort(addr)
		}
		t.tls.NextProtos = []string{"http/1.1"}
		// Up to Options.Conns connections to one server: the ones opened
		// after the first resume its session instead of verifying the
		// certificate chain again.
		t.tls.ClientSessionCache = tls.NewLRUClientSessionCache(conns)
	}
	return t
}

// errH1Informational: more 1xx answers than any server sends before its
// final one.
var errH1Informational = errors.New("too many 1xx responses")

// RoundTrip implements http.RoundTripper.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != t.scheme || req.URL.Host != t.host {
		return t.other.RoundTrip(req)
	}
	ctx := req.Context()
	select {
	case t.slots <- struct{}{}:
	case <-ctx.Done():
		closeBody(req)
		return nil, ctx.Err()
	}
	c, reused, err := t.conn(ctx)
	if err != nil {
		<-t.slots
		closeBody(req)
		return nil, err
	}
	resp, stop, err := t.exchange(ctx, c, req)
	if err != nil && reused && c.got == c.gotAtSend && replayable(req) && ctx.Err() == nil {
		// A kept connection the server had already closed: nothing came
		// back, so nothing was answered. PUT and GET may be sent again;
		// on a new connection, since the other idle ones may be as old.
		if req, err = rewound(req); err == nil {
			if c, err = t.dial(ctx); err == nil {
				resp, stop, err = t.exchange(ctx, c, req)
			}
		}
	}
	if err != nil {
		<-t.slots
		return nil, err
	}
	resp.Body = &h1Body{rc: resp.Body, t: t, c: c, stop: stop, keep: !resp.Close && !req.Close}
	return resp, nil
}

// exchange writes req on c and reads the answer's head. On success the
// caller owns c until the body is done; stop undoes the context's hook.
// On failure c is closed.
func (t *h1Transport) exchange(ctx context.Context, c *h1Conn, req *http.Request) (*http.Response, func() bool, error) {
	c.gotAtSend = c.got
	dl, _ := ctx.Deadline()
	_ = c.nc.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, func() bool, error) {
		stop()
		c.nc.Close()
		if ctx.Err() != nil {
			// The deadline the hook set is the context's: say so.
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, nil, err
	}
	if err := req.Write(c.bw); err != nil {
		return fail(err)
	}
	if err := c.bw.Flush(); err != nil {
		return fail(err)
	}
	for range 5 {
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			return fail(err)
		}
		// 1xx answers (103 Early Hints) come before the real one; 101
		// would switch protocols, which a status report never asks for.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			if resp.StatusCode == http.StatusSwitchingProtocols {
				resp.Close = true
			}
			return resp, stop, nil
		}
	}
	return fail(errH1Informational)
}

// conn takes the most recently used idle connection, or dials one.
func (t *h1Transport) conn(ctx context.Context) (c *h1Conn, reused bool, err error) {
	now := time.Now()
	t.mu.Lock()
	for len(t.idle) > 0 {
		c = t.idle[len(t.idle)-1]
		t.idle = t.idle[:len(t.idle)-1]
		if now.Sub(c.idleSince) <= t.idleFor {
			break
		}
		c.nc.Close()
		c = nil
	}
	t.mu.Unlock()
	if c != nil {
		return c, true, nil
	}
	c, err = t.dial(ctx)
	return c, false, err
}

func (t *h1Transport) dial(ctx context.Context) (*h1Conn, error) {
	nc, err := t.dialer.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	if t.tls != nil {
		tc := tls.Client(nc, t.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	c := &h1Conn{nc: nc, bw: bufio.NewWriterSize(nc, 4<<10)}
	c.br = bufio.NewReaderSize(c, 4<<10)
	return c, nil
}

// release ends a request on c: back to the pool if keep, else closed.
func (t *h1Transport) release(c *h1Conn, keep bool) {
	if keep && c.br.Buffered() == 0 {
		_ = c.nc.SetDeadline(time.Time{})
		c.idleSince = time.Now()
		t.mu.Lock()
		t.idle = append(t.idle, c)
		t.mu.Unlock()
	} else {
		c.nc.Close()
	}
	<-t.slots
}

// CloseIdleConnections closes the pooled connections (http.Client's
// method of that name calls it).
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
	if ci, ok := t.other.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// h1Body is a response body; its end hands the connection back.
type h1Body struct {
	rc   io.ReadCloser // http.ReadResponse's body, reading c.br
	t    *h1Transport
	c    *h1Conn
	stop func() bool // undoes the context's hook on c; false if it fired
	keep bool        // the server keeps the connection open
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err != nil {
		// At io.EOF the next request may use the connection: the body
		// reader returns it with the body's last bytes, so a read of
		// exactly the announced length gives the connection back.
		b.finish(err == io.EOF)
	}
	return n, err
}

// Close without reading to the end drops the connection: the rest of the
// body would be read as the next request's answer.
func (b *h1Body) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

func (b *h1Body) finish(atEOF bool) {
	b.done = true
	hookFired := !b.stop()
	b.t.release(b.c, atEOF && b.keep && !hookFired)
}

// replayable: a request that may be sent twice (RFC 9110's idempotent
// methods) and whose body can be had again.
func replayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
	default:
		return false
	}
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// rewound is req with its body from the start again.
func rewound(req *http.Request) (*http.Request, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return req, nil
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, err
	}
	r := *req
	r.Body = body
	return &r, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
