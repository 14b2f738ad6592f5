package report

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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
// still net/http's own: a report's request is Request.Write's, rendered
// once (h1Put), and its answer is read by http.ReadResponse unless it is
// the plain one (readPlainAnswer). One report, 16 in flight, to a backend
// on loopback (BenchmarkSubmit, the backend's work included; net/http's
// transport against this one, one run): 31–39 → 21–25 µs over http,
// 51–62 → 23–28 over https; 48–51 allocations instead of 101–107
// (Client.sendStatus hands it the report without http.Client). Over https it costs
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

// IdleFor is how long the client keeps an idle connection for reuse.
const IdleFor = h1IdleFor

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
	return t.roundTrip(req.Context(), outgoing{req: req})
}

// put sends one status report: p's head with body's length, then body.
func (t *h1Transport) put(ctx context.Context, p *h1Put, body []byte) (*http.Response, error) {
	return t.roundTrip(ctx, outgoing{req: p.req, put: p, body: body})
}

func (t *h1Transport) roundTrip(ctx context.Context, o outgoing) (*http.Response, error) {
	select {
	case t.slots <- struct{}{}:
	case <-ctx.Done():
		o.closeBody()
		return nil, ctx.Err()
	}
	c, reused, err := t.conn(ctx)
	if err != nil {
		<-t.slots
		o.closeBody()
		return nil, err
	}
	resp, stop, err := t.exchange(ctx, c, o)
	if err != nil && reused && c.got == c.gotAtSend && o.replayable() && ctx.Err() == nil {
		// A kept connection the server had already closed: nothing came
		// back, so nothing was answered. PUT and GET may be sent again;
		// on a new connection, since the other idle ones may be as old.
		if o, err = o.rewound(); err == nil {
			if c, err = t.dial(ctx); err == nil {
				resp, stop, err = t.exchange(ctx, c, o)
			}
		}
	}
	if err != nil {
		<-t.slots
		return nil, err
	}
	resp.Body = &h1Body{rc: resp.Body, t: t, c: c, stop: stop, keep: !resp.Close && !o.req.Close}
	return resp, nil
}

// exchange writes o on c and reads the answer's head. On success the
// caller owns c until the body is done; stop undoes the context's hook.
// On failure c is closed.
func (t *h1Transport) exchange(ctx context.Context, c *h1Conn, o outgoing) (*http.Response, func() bool, error) {
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
	if err := o.write(c.bw); err != nil {
		return fail(err)
	}
	if err := c.bw.Flush(); err != nil {
		return fail(err)
	}
	for range 5 {
		var resp *http.Response
		var err error
		if o.req.Method != http.MethodHead { // a HEAD's answer has a length and no body
			resp, err = readPlainAnswer(c.br, o.req)
		}
		if resp == nil && err == nil {
			resp, err = http.ReadResponse(c.br, o.req)
		}
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

// outgoing is one request: req as given (RoundTrip), or a status report
// rendered ahead (put, body; req is then put's, for http.ReadResponse).
type outgoing struct {
	req  *http.Request
	put  *h1Put
	body []byte
}

func (o outgoing) write(w *bufio.Writer) error {
	if o.put == nil {
		return o.req.Write(w)
	}
	w.WriteString(o.put.head)
	var n [20]byte
	w.Write(strconv.AppendInt(n[:0], int64(len(o.body)), 10))
	w.WriteString(o.put.tail)
	_, err := w.Write(o.body)
	return err
}

// replayable: a request that may be sent twice (RFC 9110's idempotent
// methods) and whose body can be had again.
func (o outgoing) replayable() bool {
	if o.put != nil {
		return true
	}
	req := o.req
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
	default:
		return false
	}
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// rewound is o with its body from the start again.
func (o outgoing) rewound() (outgoing, error) {
	req := o.req
	if o.put != nil || req.Body == nil || req.Body == http.NoBody {
		return o, nil
	}
	body, err := req.GetBody()
	if err != nil {
		return outgoing{}, err
	}
	r := *req
	r.Body = body
	return outgoing{req: &r}, nil
}

func (o outgoing) closeBody() {
	if o.put == nil && o.req.Body != nil {
		o.req.Body.Close()
	}
}

// h1Put is a status report's request rendered once by Request.Write, cut
// where the body's length goes: every report sends these bytes, with its
// own length and body, as Request.Write would have written them
// (TestH1Put_SameBytesAsRequestWrite), without rendering the request
// line and sorting the headers again each time.
type h1Put struct {
	head, tail string        // before and after the length's digits
	req        *http.Request // for reading the answer: method PUT, no body
}

func newH1Put(u *url.URL, header http.Header) (*h1Put, error) {
	req := &http.Request{Method: http.MethodPut, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: header, Host: u.Host, Body: io.NopCloser(strings.NewReader("x")), ContentLength: 1}
	var b strings.Builder
	if err := req.Write(&b); err != nil {
		return nil, err
	}
	const length = "\r\nContent-Length: "
	s := b.String()
	i := strings.Index(s, length+"1\r\n")
	if i < 0 || !strings.HasSuffix(s, "\r\n\r\nx") {
		return nil, fmt.Errorf("unexpected request head %q", s)
	}
	req.Body, req.ContentLength = nil, 0
	return &h1Put{head: s[:i+len(length)], tail: s[i+len(length)+1 : len(s)-1], req: req}, nil
}

// readPlainAnswer reads the plainest answer, and the usual one to a
// status report, without http.ReadResponse's header map: "HTTP/1.1 2xx",
// a Content-Length, and the whole answer already read in. Any other
// (another version or status, chunked, no length, a folded or repeated
// header, an answer not all in yet) it leaves unread and returns nil, nil
// for http.ReadResponse. Its answer has no Header: a 2xx's headers are
// not read (Client.once reads Retry-After of a refusal only).
// FuzzReadPlainAnswer holds it to http.ReadResponse.
func readPlainAnswer(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if _, err := br.Peek(1); err != nil {
		return nil, err
	}
	b, _ := br.Peek(br.Buffered())
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, nil
	}
	lines := b[:end+2]
	nl := bytes.IndexByte(lines, '\n')
	if nl < 1 || lines[nl-1] != '\r' {
		return nil, nil
	}
	status := lines[:nl-1]
	if len(status) < 12 || string(status[:9]) != "HTTP/1.1 " || status[9] != '2' ||
		status[10] < '0' || status[10] > '9' || status[11] < '0' || status[11] > '9' ||
		len(status) > 12 && status[12] != ' ' {
		return nil, nil
	}
	code := 200 + int(status[10]-'0')*10 + int(status[11]-'0')
	if code == http.StatusNoContent || code == http.StatusResetContent {
		return nil, nil // no body whatever the length says: leave it to net/http
	}
	length, closing := int64(-1), false
	for rest := lines[nl+1:]; len(rest) > 0; {
		nl := bytes.IndexByte(rest, '\n')
		line := rest[:nl]
		rest = rest[nl+1:]
		if len(line) == 0 || line[len(line)-1] != '\r' {
			return nil, nil // a bare LF
		}
		line = line[:len(line)-1]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !validFieldName(line[:colon]) {
			return nil, nil // a folded line, or a name net/http would refuse
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return nil, nil // net/http refuses the answer
			}
		}
		switch {
		case asciiEqualFold(name, "Content-Length"):
			if length >= 0 || len(value) == 0 || len(value) > 9 {
				return nil, nil
			}
			length = 0
			for _, d := range value {
				if d < '0' || d > '9' {
					return nil, nil
				}
				length = length*10 + int64(d-'0')
			}
		case asciiEqualFold(name, "Connection"):
			switch {
			case asciiEqualFold(value, "close"):
				closing = true
			case !asciiEqualFold(value, "keep-alive"):
				return nil, nil
			}
		case asciiEqualFold(name, "Transfer-Encoding"), asciiEqualFold(name, "Trailer"):
			return nil, nil
		}
	}
	if length < 0 || int64(len(b)-end-4) < length {
		return nil, nil
	}
	body := make([]byte, length)
	copy(body, b[end+4:])
	_, _ = br.Discard(end + 4 + int(length))
	return &http.Response{Status: string(status[9:]), StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		ContentLength: length, Close: closing, Body: &heldBody{b: body}, Request: req}, nil
}

// validFieldName: a header name net/http accepts (a token).
func validFieldName(b []byte) bool {
	for _, c := range b {
		if !tokenByte[c] {
			return false
		}
	}
	return true
}

// tokenByte: RFC 9110's tchar.
var tokenByte = func() (t [256]bool) {
	for c := '!'; c <= '~'; c++ {
		t[c] = !strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c)
	}
	return t
}()

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		d := s[i]
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// heldBody is an answer's body read in already. Like net/http's body of
// an announced length, its last bytes come with io.EOF, so a read of
// exactly that length ends it (readBody) and frees the connection.
type heldBody struct{ b []byte }

func (h *heldBody) Read(p []byte) (int, error) {
	n := copy(p, h.b)
	h.b = h.b[n:]
	if len(h.b) == 0 {
		return n, io.EOF
	}
	return n, nil
}

func (h *heldBody) Close() error { return nil }

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
