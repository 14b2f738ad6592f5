package report

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Errors callers can test for.
var (
	ErrBodyTooLarge  = errors.New("response body too large")
	ErrBadEnvelope   = errors.New("response is not a backend envelope")
	ErrCrossRedirect = errors.New("refusing redirect to another host")
)

// HTTPError is a non-success answer from the backend.
type HTTPError struct {
	Op      string // "fetching peers", "reporting peer 7"
	Status  int    // HTTP status
	Code    int    // envelope code, when there was one
	Message string // envelope message, truncated
}

func (e *HTTPError) Error() string {
	if e.Code != 0 && e.Code != 200 && e.Status/100 == 2 {
		return fmt.Sprintf("%s: backend answered code %d: %s", e.Op, e.Code, e.Message)
	}
	if e.Message != "" {
		return fmt.Sprintf("%s: http %d: %s", e.Op, e.Status, e.Message)
	}
	return fmt.Sprintf("%s: http %d", e.Op, e.Status)
}

// Retryable reports whether another attempt may succeed.
func (e *HTTPError) Retryable() bool {
	return e.Status >= 500 || e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests
}

// Options configure a Client.
type Options struct {
	BaseURL   string
	APIKey    string
	UserAgent string // default "neo-uptime-node/dev"
	CAFile    string // extra CA bundle for the backend's certificate
	// MaxBody caps every response body except the peer list's; default 1 MiB.
	MaxBody int64
	// MaxPeersBody caps the peer list; default 32 MiB (100,000 peers).
	MaxPeersBody int64
	// AttemptTimeout bounds one HTTP attempt; default 10s.
	AttemptTimeout time.Duration
	// MaxElapsed bounds retries of one call (the context bounds it too);
	// default 30s.
	MaxElapsed time.Duration
	// Conns is the keep-alive pool size per host; default 16.
	Conns int
	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
}

// Client talks to the backend. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	apiKey  string
	ua      string
	maxBody int64
	maxList int64
	attempt time.Duration
	elapsed time.Duration
	hc      *http.Client
	put     *http.Client // the status reports: hc, or over an h1Transport
	status  string       // the status reports' URL

	// With the h1Transport, a status report is sent without http.Client
	// (sendStatus), as the request New rendered once.
	h1         *h1Transport
	statusPut  *h1Put                 // every report's request, rendered once
	redirected atomic.Bool            // a report was redirected: the rest go through http.Client
	movedTo    atomic.Pointer[string] // where a request was redirected since Redirected's last call
}

// New validates opts and builds a client with a keep-alive pool.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("backend base url %q: want http(s)://host[/prefix]", opts.BaseURL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("backend base url: no credentials, query or fragment allowed")
	}
	c := &Client{base: u, apiKey: opts.APIKey, ua: opts.UserAgent, maxBody: opts.MaxBody, maxList: opts.MaxPeersBody,
		attempt: opts.AttemptTimeout, elapsed: opts.MaxElapsed}
	if c.ua == "" {
		c.ua = "neo-uptime-node/dev"
	}
	if c.maxBody <= 0 {
		c.maxBody = 1 << 20
	}
	if c.maxList <= 0 {
		c.maxList = 32 << 20
	}
	if c.attempt <= 0 {
		c.attempt = 10 * time.Second
	}
	if c.elapsed <= 0 {
		c.elapsed = 30 * time.Second
	}
	c.status = c.endpoint("nodes/status", nil)
	conns := opts.Conns
	if conns <= 0 {
		conns = 16
	}
	rt := opts.Transport
	if rt == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = conns
		tr.MaxConnsPerHost = conns
		tr.Proxy = func(r *http.Request) (*url.URL, error) { return proxyFor(r) }
		tr.ForceAttemptHTTP2 = true
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if opts.CAFile != "" {
			pem, err := os.ReadFile(opts.CAFile)
			if err != nil {
				return nil, fmt.Errorf("reading backend ca file: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("backend ca file %s holds no PEM certificate", opts.CAFile)
			}
			tr.TLSClientConfig.RootCAs = pool
		}
		rt = tr
		// The status reports go over HTTP/1.1 on the caller's goroutine
		// (h1Transport), unless a proxy is in the way (or the request
		// cannot be written: net/http then says why, report by report).
		statusURL := mustParse(c.status)
		p, err := proxyFor(&http.Request{URL: statusURL})
		if err == nil && p == nil {
			c.statusPut, err = newH1Put(statusURL, c.header(true))
		}
		if err == nil && p == nil {
			port := u.Port()
			if port == "" {
				port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
			}
			c.h1 = newH1Transport(u.Scheme, u.Host, net.JoinHostPort(u.Hostname(), port), tr.TLSClientConfig, conns, tr)
			c.put = &http.Client{Transport: c.h1, CheckRedirect: c.checkRedirect}
		}
	}
	c.hc = &http.Client{Transport: rt, CheckRedirect: c.checkRedirect}
	if c.put == nil {
		c.put = c.hc
	}
	return c, nil
}

// CloseIdleConnections closes the connections kept for reuse (loop mode,
// when its next run comes later than IdleFor, and Lambda after each
// invocation: kept longer, they would only sit open, or half closed by
// the backend, until the next run drops them).
func (c *Client) CloseIdleConnections() {
	c.hc.CloseIdleConnections()
	if c.put != c.hc {
		c.put.CloseIdleConnections()
	}
}

// proxyFor is the proxy, if any, for a request (tests replace it: net/http
// reads the environment once per process).
var proxyFor = http.ProxyFromEnvironment

func mustParse(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err) // s came from a parsed URL
	}
	return u
}

// checkRedirect follows at most 3 redirects, and only on the same host:
// the API key must never reach another server.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return fmt.Errorf("stopped after %d redirects", len(via))
	}
	if req.URL.Host != via[0].URL.Host || (via[0].URL.Scheme == "https" && req.URL.Scheme != "https") {
		return fmt.Errorf("%w: %s", ErrCrossRedirect, req.URL.Host)
	}
	if c.movedTo.Load() == nil {
		u := *req.URL
		u.User, u.RawQuery, u.Fragment = nil, "", ""
		to := u.String()
		c.movedTo.CompareAndSwap(nil, &to)
	}
	return nil
}

// Redirected is where the backend redirected one of this client's
// requests on its own host (followed) since the last call, without
// credentials, query or fragment; or "". Each such request costs two:
// the job says so after each run, so that BACKEND_BASE_URL is set to the
// new place.
func (c *Client) Redirected() string {
	if to := c.movedTo.Swap(nil); to != nil {
		return *to
	}
	return ""
}

// endpoint joins the base URL's path with p ("peers", "nodes/status").
func (c *Client) endpoint(p string, q url.Values) string {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + p
	u.RawPath = ""
	u.RawQuery = q.Encode()
	return u.String()
}

// envelope is every response body's shape.
type envelope struct {
	Code    *int            `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// decodeEnvelope is json.Unmarshal(raw, &env), quicker for the usual
// shape (fastEnvelope).
func decodeEnvelope(raw []byte) (envelope, error) {
	if env, ok := fastEnvelope(raw); ok {
		return env, nil
	}
	var env envelope
	err := json.Unmarshal(raw, &env)
	return env, err
}

// retryAfter carries a server's Retry-After into the backoff schedule.
type retryAfter struct {
	backoff.BackOff
	next time.Duration
}

func (r *retryAfter) NextBackOff() time.Duration {
	d := r.BackOff.NextBackOff()
	if r.next > 0 && d != backoff.Stop {
		d, r.next = max(d, r.next), 0
	}
	return d
}

// do runs one call with retries; it returns the envelope's data.
func (c *Client) do(ctx context.Context, hc *http.Client, op, method, target string, body []byte, limit int64) (json.RawMessage, error) {
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = 200 * time.Millisecond
	eb.MaxInterval = 5 * time.Second
	eb.MaxElapsedTime = c.elapsed
	ra := &retryAfter{BackOff: eb}
	var data json.RawMessage
	var cause error // the last attempt's error that was not the call's deadline
	operation := func() error {
		d, wait, err := c.once(ctx, hc, op, method, target, body, limit)
		data, ra.next = d, wait
		if err != nil && !pastDeadline(ctx) {
			cause = err
		}
		return err
	}
	err := backoff.Retry(operation, backoff.WithContext(ra, ctx))
	if err != nil && ctx.Err() != nil && cause != nil {
		// Out of time while retrying: keep the cause, not just the
		// deadline, also when the deadline cut the last attempt short.
		return nil, fmt.Errorf("out of time after retries: %w", cause)
	}
	return data, err
}

// pastDeadline reports whether ctx has ended or its deadline has come:
// a conn deadline set from it can fire a moment before ctx's own timer,
// and the attempt it cut short then still finds ctx.Err nil.
func pastDeadline(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// once makes one attempt. A returned error wrapped in backoff.Permanent is
// not retried; wait is the server's Retry-After, if any.
func (c *Client) once(ctx context.Context, hc *http.Client, op, method, target string, body []byte, limit int64) (json.RawMessage, time.Duration, error) {
	actx, cancel := context.WithTimeout(ctx, c.attempt)
	defer cancel()
	resp, err := c.sendStatus(actx, hc, method, target, body)
	if resp == nil && err == nil {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, rerr := http.NewRequestWithContext(actx, method, target, rd)
		if rerr != nil {
			return nil, 0, backoff.Permanent(fmt.Errorf("%s: %w", op, rerr))
		}
		req.Header = c.header(body != nil)
		resp, err = hc.Do(req)
	}
	if err != nil {
		// A redirect off the backend, or a certificate that does not
		// verify: no retry can mend either within a run.
		if errors.Is(err, ErrCrossRedirect) || certError(err) {
			return nil, 0, backoff.Permanent(fmt.Errorf("%s: %w", op, err))
		}
		return nil, 0, fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	raw, err := readBody(resp, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: reading response: %w", op, err)
	}
	if int64(len(raw)) > limit {
		return nil, 0, backoff.Permanent(fmt.Errorf("%s: %w (over %d bytes)", op, ErrBodyTooLarge, limit))
	}
	env, envErr := decodeEnvelope(raw)
	if resp.StatusCode/100 != 2 {
		he := &HTTPError{Op: op, Status: resp.StatusCode}
		if envErr == nil {
			he.Message = truncate(env.Message)
		}
		if he.Retryable() {
			return nil, parseRetryAfter(resp.Header.Get("Retry-After")), he
		}
		return nil, 0, backoff.Permanent(he)
	}
	if envErr != nil || env.Code == nil {
		return nil, 0, backoff.Permanent(fmt.Errorf("%s: %w", op, ErrBadEnvelope))
	}
	if *env.Code != 200 {
		return nil, 0, backoff.Permanent(&HTTPError{Op: op, Status: resp.StatusCode, Code: *env.Code, Message: truncate(env.Message)})
	}
	return env.Data, 0, nil
}

// header is every request's headers.
func (c *Client) header(withBody bool) http.Header {
	h := http.Header{}
	h.Set("x-api-key", c.apiKey)
	h.Set("User-Agent", c.ua)
	h.Set("Accept", "application/json")
	if withBody {
		h.Set("Content-Type", "application/json")
	}
	return h
}

// sendStatus sends a status report straight to the h1Transport, when
// that is the report's transport; otherwise it returns nil, nil and once
// goes through http.Client. http.Client copies every request's headers
// for the redirects it may follow, and with the request's parsing that
// cost as much as the h1Transport's exchange without its system calls.
// The report's request is the one New rendered (h1Put, shared by all);
// an answer that redirects is dropped, and once sends
// the report again through http.Client, which follows the redirect by
// checkRedirect's rules, as it does every later report.
func (c *Client) sendStatus(ctx context.Context, hc *http.Client, method, target string, body []byte) (*http.Response, error) {
	if c.h1 == nil || hc != c.put || method != http.MethodPut || target != c.status || c.redirected.Load() {
		return nil, nil
	}
	resp, err := c.h1.put(ctx, c.statusPut, body)
	if err != nil {
		return nil, &url.Error{Op: "Put", URL: target, Err: err} // as http.Client says it
	}
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		// A backend that redirects one report redirects them all (a
		// moved base URL): the rest go straight to http.Client.
		c.redirected.Store(true)
		resp.Body.Close()
		return nil, nil
	}
	return resp, nil
}

// readBody reads at most limit+1 bytes of resp's body, into one buffer
// when its length is announced: a peer list of 1,000 is ~150 KB, which
// io.ReadAll reaches through a dozen doublings. The transport ends such a
// body at that length (its last read returns io.EOF with the last bytes,
// which keeps the connection for reuse) and reports a short one as
// io.ErrUnexpectedEOF.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	r := io.LimitReader(resp.Body, limit+1)
	n := resp.ContentLength
	if n <= 0 || n > limit {
		return io.ReadAll(r)
	}
	b := make([]byte, n)
	m, err := io.ReadFull(r, b)
	return b[:m], err
}

// parseRetryAfter reads delta-seconds or an HTTP date; at most 5 minutes.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 && !math.IsInf(s, 0) {
		return min(time.Duration(s*float64(time.Second)), 5*time.Minute)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(time.Until(t), 0), 5*time.Minute)
	}
	return 0
}

// ListTargets fetches the peers to monitor for region ("" for all). It
// returns the valid peers and a warning per skipped one.
func (c *Client) ListTargets(ctx context.Context, region string) ([]Peer, []string, error) {
	q := url.Values{}
	if region != "" {
		q.Set("region", region)
	}
	data, err := c.do(ctx, c.hc, "fetching peers", http.MethodGet, c.endpoint("peers", q), nil, c.maxList)
	if err != nil {
		return nil, nil, err
	}
	return parsePeers(data)
}

// Status is one peer's report.
type Status struct {
	ID           int64  `json:"id"`
	Status       string `json:"status"` // "online" or "offline"
	ResponseTime int64  `json:"response_time"`
	PeerCount    int    `json:"peer_count"`
}

// marshal is json.Marshal(s), the usual statuses written directly
// (TestStatus_MarshalAsEncodingJSON).
func (s Status) marshal() ([]byte, error) {
	if s.Status != "online" && s.Status != "offline" {
		return json.Marshal(s)
	}
	b := make([]byte, 0, 80)
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, s.ID, 10)
	b = append(b, `,"status":"`...)
	b = append(b, s.Status...)
	b = append(b, `","response_time":`...)
	b = strconv.AppendInt(b, s.ResponseTime, 10)
	b = append(b, `,"peer_count":`...)
	b = strconv.AppendInt(b, int64(s.PeerCount), 10)
	return append(b, '}'), nil
}

// Submit reports one peer's status.
func (c *Client) Submit(ctx context.Context, s Status) error {
	body, err := s.marshal()
	if err != nil {
		return err
	}
	_, err = c.do(ctx, c.put, "reporting peer "+strconv.FormatInt(s.ID, 10), http.MethodPut, c.status, body, c.maxBody)
	return err
}

// ResponseTimeMS turns EasyTier's microsecond figure into the backend's
// milliseconds: rounded, and at least 1 for an online peer.
func ResponseTimeMS(us int64) int64 {
	ms := (us + 500) / 1000
	if ms < 1 {
		ms = 1
	}
	return ms
}

// ErrorClass names the kind of a backend failure for logs and metrics:
// auth, rate_limited, server_error, client_error, rejected (2xx with an
// envelope code), too_large, bad_response, redirect, tls, timeout,
// refused or network.
func ErrorClass(err error) string {
	var (
		he *HTTPError
		ne net.Error
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &he):
		switch {
		case he.Status == http.StatusUnauthorized || he.Status == http.StatusForbidden:
			return "auth"
		case he.Status == http.StatusTooManyRequests:
			return "rate_limited"
		case he.Status >= 500:
			return "server_error"
		case he.Status/100 == 2:
			return "rejected"
		}
		return "client_error"
	case errors.Is(err, ErrBodyTooLarge):
		return "too_large"
	case errors.Is(err, ErrBadEnvelope):
		return "bad_response"
	case errors.Is(err, ErrCrossRedirect):
		return "redirect"
	case certError(err):
		return "tls"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	for _, e := range refusedErrnos {
		if errors.Is(err, e) {
			return "refused"
		}
	}
	return "network"
}

// certError reports a server certificate that did not verify.
func certError(err error) bool {
	var (
		certErr *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
	)
	return errors.As(err, &certErr) || errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid)
}
