package report

import (
	"bufio"
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var okStatus = Status{ID: 7, Status: "online", ResponseTime: 3, PeerCount: 1}

// connCounter counts a test server's connections: opened in all, and
// open at once at most.
type connCounter struct {
	opened, open, peak atomic.Int32
}

func (cc *connCounter) hook(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		cc.opened.Add(1)
		n := cc.open.Add(1)
		for p := cc.peak.Load(); n > p && !cc.peak.CompareAndSwap(p, n); p = cc.peak.Load() {
		}
	case http.StateClosed, http.StateHijacked:
		cc.open.Add(-1)
	}
}

// The reports reuse their connections, never more than Options.Conns at
// once, however many callers report at the same time.
func TestH1_KeepsAtMostConnsConnections(t *testing.T) {
	var got atomic.Int32
	var cc connCounter
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got.Add(1)
		fmt.Fprint(w, `{"code":200,"message":"Success"}`)
	}))
	srv.Config.ConnState = cc.hook
	srv.Start()
	defer srv.Close()
	c, err := New(Options{BaseURL: srv.URL, APIKey: "k", Conns: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.put.Transport.(*h1Transport); !ok {
		t.Fatalf("status reports go over %T, want *h1Transport", c.put.Transport)
	}
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if err := c.Submit(context.Background(), okStatus); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := got.Load(); n != 32*20 {
		t.Errorf("backend got %d reports, want %d", n, 32*20)
	}
	if p := cc.peak.Load(); p > 4 {
		t.Errorf("%d connections open at once, want at most Conns (4)", p)
	}
	if n := cc.opened.Load(); n > 4 {
		t.Errorf("%d connections opened for 640 reports, want at most 4 (kept alive)", n)
	}
}

// rawBackend answers each connection's requests with the canned answers
// of script, in turn, one per request; after the last it closes the
// connection. It records each request line.
type rawBackend struct {
	ln    net.Listener
	mu    sync.Mutex
	lines []string
	conns atomic.Int32
	// script returns the answers for the n-th connection (from 1).
	script func(n int) []string
	closed chan struct{} // one send per connection the server closed
}

func startRaw(t *testing.T, script func(n int) []string) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rb := &rawBackend{ln: ln, script: script, closed: make(chan struct{}, 100)}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go rb.serve(nc, rb.script(int(rb.conns.Add(1))))
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return rb
}

func (rb *rawBackend) serve(nc net.Conn, answers []string) {
	defer func() { rb.closed <- struct{}{} }()
	defer nc.Close()
	br := bufio.NewReader(nc)
	for _, a := range answers {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		rb.mu.Lock()
		rb.lines = append(rb.lines, req.Method+" "+req.URL.Path)
		rb.mu.Unlock()
		// "\x00" in an answer: send what comes before it, pause, go on.
		for i, part := range strings.Split(a, "\x00") {
			if i > 0 {
				time.Sleep(20 * time.Millisecond)
			}
			if _, err := io.WriteString(nc, part); err != nil {
				return
			}
		}
	}
}

func (rb *rawBackend) url() string { return "http://" + rb.ln.Addr().String() }

func (rb *rawBackend) requests() int {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return len(rb.lines)
}

// bigEnvelope is more than the transport's 4 KiB read buffer holds.
var bigEnvelope = `{"code":200,"message":"` + strings.Repeat("x", 6000) + `"}`

const (
	okAnswer      = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"code\":200}"
	chunkedAnswer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"cod\r\n7\r\ne\":200}\r\n0\r\n\r\n"
	closeAnswer   = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 12\r\n\r\n{\"code\":200}"
	http10Answer  = "HTTP/1.0 200 OK\r\n\r\n{\"code\":200}" // its end is the connection's
	hintsAnswer   = "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + okAnswer
)

// h1Client is a Client whose reports go to url with no retries but the
// transport's own.
func h1Client(t *testing.T, url string) *Client {
	t.Helper()
	c, err := New(Options{BaseURL: url, APIKey: "k", MaxElapsed: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A server that closed a kept connection: the next report on it gets no
// answer, and the transport sends it again on a new connection at once,
// with no retry of the client's (MaxElapsed 1 ns allows none).
func TestH1_StaleConnectionIsRetried(t *testing.T) {
	rb := startRaw(t, func(int) []string { return []string{okAnswer} }) // one answer, then closes
	c := h1Client(t, rb.url())
	if err := c.Submit(context.Background(), okStatus); err != nil {
		t.Fatal(err)
	}
	<-rb.closed // the server has closed the kept connection
	if err := c.Submit(context.Background(), okStatus); err != nil {
		t.Fatalf("report on a connection the server closed: %v", err)
	}
	if n := rb.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
	if n := rb.requests(); n != 2 {
		t.Errorf("server read %d requests, want 2", n)
	}
}

// A connection that dies after part of an answer arrived is not retried:
// the server may have acted on the request, and the error is the
// caller's to see.
func TestH1_PartAnswerIsNotRetried(t *testing.T) {
	rb := startRaw(t, func(int) []string { return []string{okAnswer, "HTTP/1.1 200 OK\r\nContent-Le"} })
	c := h1Client(t, rb.url())
	if err := c.Submit(context.Background(), okStatus); err != nil {
		t.Fatal(err)
	}
	if err := c.Submit(context.Background(), okStatus); err == nil {
		t.Error("report cut mid-answer succeeded")
	}
	if n := rb.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1 (no retry)", n)
	}
}

// Each shape of answer a server may give is read right, and the
// connection kept only when the server keeps it.
func TestH1_AnswerShapes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		answer    string
		wantConns int32 // for two reports
		wantErr   error
	}{
		{"content-length", okAnswer, 1, nil},
		{"chunked", chunkedAnswer, 1, nil},
		{"connection close", closeAnswer, 2, nil},
		{"http/1.0 to the end", http10Answer, 2, nil},
		{"103 first", hintsAnswer, 1, nil},
		{"names in lower case", "HTTP/1.1 200 OK\r\ncontent-length: 12\r\nconnection: keep-alive\r\n\r\n{\"code\":200}", 1, nil},
		{"body after a pause", "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n\x00{\"code\":200}", 1, nil},
		{"head cut by a pause", "HTTP/1.1 200 OK\r\nContent-Le\x00ngth: 12\r\n\r\n{\"code\":200}", 1, nil},
		{"body past the read buffer", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(bigEnvelope), bigEnvelope), 1, nil},
		{"endless 1xx", strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 6) + okAnswer, 2, errH1Informational},
		{"body over the cap", "HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n" + strings.Repeat(" ", 2000000), 2, ErrBodyTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answers := []string{tc.answer, tc.answer}
			if tc.wantConns == 2 { // the server hangs up after its one answer
				answers = answers[:1]
			}
			rb := startRaw(t, func(int) []string { return answers })
			c := h1Client(t, rb.url())
			for i := range 2 {
				err := c.Submit(context.Background(), okStatus)
				if (tc.wantErr == nil) != (err == nil) || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Fatalf("report %d: %v, want %v", i+1, err, tc.wantErr)
				}
			}
			if n := rb.conns.Load(); n != tc.wantConns {
				t.Errorf("%d connections for two reports, want %d", n, tc.wantConns)
			}
		})
	}
}

// Cancelling a report while the server sits on it ends the call at once
// with the context's error, and that connection is not used again.
func TestH1_CancelMidAnswer(t *testing.T) {
	got := make(chan struct{}, 1)
	hang := startHang(t, got)
	c := h1Client(t, hang)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Submit(ctx, okStatus) }()
	<-got
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled report: %v, want context.Canceled", err)
	}
	h1 := c.put.Transport.(*h1Transport)
	h1.mu.Lock()
	idle := len(h1.idle)
	h1.mu.Unlock()
	if idle != 0 || len(h1.slots) != 0 {
		t.Errorf("after a cancelled report: %d idle connections, %d slots taken; want none", idle, len(h1.slots))
	}
}

// startHang serves requests it never answers; got gets a send for each.
func startHang(t *testing.T, got chan<- struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				if _, err := http.ReadRequest(bufio.NewReader(nc)); err == nil {
					got <- struct{}{}
				}
				io.Copy(io.Discard, nc) // until the client hangs up
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// Over https the reports speak HTTP/1.1 even to a server that offers
// HTTP/2, keep their connections, and verify the certificate.
func TestH1_TLS(t *testing.T) {
	var protos sync.Map
	var cc connCounter
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Proto, true)
		fmt.Fprint(w, `{"code":200}`)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = cc.hook
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{BaseURL: srv.URL, APIKey: "k", CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := c.Submit(context.Background(), okStatus); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	protos.Range(func(k, _ any) bool { seen = append(seen, k.(string)); return true })
	if len(seen) != 1 || seen[0] != "HTTP/1.1" {
		t.Errorf("reports came as %v, want HTTP/1.1 only", seen)
	}
	if n := cc.opened.Load(); n != 1 {
		t.Errorf("%d connections for 10 reports, want 1", n)
	}
	// The fetch still goes through net/http (HTTP/2 where offered).
	if _, _, err := c.ListTargets(context.Background(), ""); err != nil {
		t.Fatalf("fetch: %v", err) // {"code":200} without data: no peers, no error
	}
	if _, ok := protos.Load("HTTP/2.0"); !ok {
		t.Errorf("the peer list's fetch did not use HTTP/2 (saw %v)", seen)
	}
}

// With a proxy configured the reports go through net/http, which speaks
// to proxies; the h1Transport is not used.
func TestClient_ProxyKeepsNetHTTP(t *testing.T) {
	var lines []string
	var mu sync.Mutex
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lines = append(lines, r.Method+" "+r.RequestURI)
		mu.Unlock()
		fmt.Fprint(w, `{"code":200}`)
	}))
	defer proxy.Close()
	pu, _ := url.Parse(proxy.URL)
	old := proxyFor
	proxyFor = func(*http.Request) (*url.URL, error) { return pu, nil }
	defer func() { proxyFor = old }()
	// Were the proxy ignored, the report would go to a closed port on
	// loopback.
	c, err := New(Options{BaseURL: "http://127.0.0.2:9/api", APIKey: "k", MaxElapsed: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.put.Transport.(*h1Transport); ok {
		t.Fatal("reports go over the h1Transport despite a proxy")
	}
	if err := c.Submit(context.Background(), okStatus); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || lines[0] != "PUT http://127.0.0.2:9/api/nodes/status" {
		t.Errorf("proxy saw %q, want the report in absolute form", lines)
	}
}

// BenchmarkSubmit: one status report to a loopback backend, 16 in flight,
// over the h1Transport and over net/http's Transport (the backend's CPU
// in the figure too: it is this process).
func BenchmarkSubmit(b *testing.B) {
	for _, scheme := range []string{"http", "https"} {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, `{"code":200,"message":"Success"}`)
		}))
		ca := ""
		if scheme == "https" {
			srv.EnableHTTP2 = true
			srv.StartTLS()
			ca = filepath.Join(b.TempDir(), "ca.pem")
			os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
		} else {
			srv.Start()
		}
		for _, tr := range []string{"h1", "net_http"} {
			b.Run(scheme+"/"+tr, func(b *testing.B) {
				c, err := New(Options{BaseURL: srv.URL, APIKey: "k", CAFile: ca, Conns: 16})
				if err != nil {
					b.Fatal(err)
				}
				if tr == "net_http" {
					c.put, c.h1 = c.hc, nil
				}
				b.SetParallelism(16)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := c.Submit(context.Background(), okStatus); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
		srv.Close()
	}
}

// A status report that the backend redirects is sent again through
// http.Client, which follows a redirect on the same host (307 keeps the
// method and body) and refuses one to another host, never sending the
// API key there.
func TestSubmit_Redirects(t *testing.T) {
	var leaked atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("x-api-key") != "" {
			leaked.Add(1)
		}
		fmt.Fprint(w, `{"code":200}`)
	}))
	defer other.Close()
	var got []string
	var mu sync.Mutex
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" "+string(b))
		mu.Unlock()
		switch r.URL.Path {
		case "/old/nodes/status":
			http.Redirect(w, r, "/new/nodes/status", http.StatusTemporaryRedirect)
		case "/away/nodes/status":
			http.Redirect(w, r, strings.Replace(other.URL, "127.0.0.1", "localhost", 1)+"/nodes/status", http.StatusTemporaryRedirect)
		default:
			fmt.Fprint(w, `{"code":200}`)
		}
	}))
	defer home.Close()

	moved := h1Client(t, home.URL+"/old")
	for range 2 {
		if err := moved.Submit(context.Background(), okStatus); err != nil {
			t.Fatalf("report redirected on its host: %v", err)
		}
	}
	// The first report is sent directly, redirected, sent again through
	// http.Client and followed; the second goes through http.Client at
	// once.
	body := `{"id":7,"status":"online","response_time":3,"peer_count":1}`
	want := []string{"PUT /old/nodes/status " + body, "PUT /old/nodes/status " + body, "PUT /new/nodes/status " + body,
		"PUT /old/nodes/status " + body, "PUT /new/nodes/status " + body}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("backend saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if to := moved.Redirected(); to != home.URL+"/new/nodes/status" {
		t.Errorf("Redirected() = %q, want the new place", to)
	}
	if to := moved.Redirected(); to != "" {
		t.Errorf("Redirected() again = %q, want none since the last call", to)
	}

	away := h1Client(t, home.URL+"/away")
	err := away.Submit(context.Background(), okStatus)
	if !errors.Is(err, ErrCrossRedirect) {
		t.Errorf("report redirected to another host: %v, want ErrCrossRedirect", err)
	}
	if to := away.Redirected(); to != "" {
		t.Errorf("Redirected() = %q after a refused redirect, want none", to)
	}
	if leaked.Load() != 0 {
		t.Error("the other host received the API key")
	}
}

// The rendered report request is Request.Write's, byte for byte, for
// any body length.
func TestH1Put_SameBytesAsRequestWrite(t *testing.T) {
	for _, raw := range []string{
		"http://127.0.0.1:8080/nodes/status",
		"https://backend.example/api/v1/nodes/status?region=eu%20west",
		"http://[::1]/base%2Fpath/nodes/status",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		c := &Client{apiKey: "k\r\nInjected: 1", ua: "neo-uptime-node/test"}
		header := c.header(true)
		p, err := newH1Put(u, header)
		if err != nil {
			t.Fatal(err)
		}
		for _, body := range []string{"", "{}", strings.Repeat("x", 12345)} {
			var got, want bytes.Buffer
			bw := bufio.NewWriter(&got)
			if err := (outgoing{req: p.req, put: p, body: []byte(body)}).write(bw); err != nil {
				t.Fatal(err)
			}
			bw.Flush()
			req := &http.Request{Method: http.MethodPut, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: header, Host: u.Host, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
			if body == "" {
				req.Body = http.NoBody
			}
			if err := req.Write(&want); err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Fatalf("%s, body of %d:\n got %q\nwant %q", raw, len(body), got.String(), want.String())
			}
		}
	}
}

// The plain answer is read without net/http; anything else is left
// unread for it.
func TestReadPlainAnswer(t *testing.T) {
	req := &http.Request{Method: http.MethodPut}
	read := func(in string) (*http.Response, *bufio.Reader, error) {
		br := bufio.NewReaderSize(strings.NewReader(in), 4096)
		resp, err := readPlainAnswer(br, req)
		return resp, br, err
	}
	resp, br, err := read(okAnswer + "HTTP/1.1 200 OK\r\n")
	if err != nil || resp == nil {
		t.Fatalf("plain answer: %v, %v", resp, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Status != "200 OK" || resp.ContentLength != 12 || string(body) != `{"code":200}` || resp.Close {
		t.Fatalf("read %d %q length %d close %v body %q", resp.StatusCode, resp.Status, resp.ContentLength, resp.Close, body)
	}
	if rest, _ := br.Peek(br.Buffered()); string(rest) != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("left %q after the answer, want the next one's start", rest)
	}
	if resp, _, _ := read(closeAnswer); resp == nil || !resp.Close {
		t.Fatalf("Connection: close not seen: %+v", resp)
	}
	for _, in := range []string{
		chunkedAnswer, http10Answer, hintsAnswer,
		"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"code\"",                              // body not all in
		"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n",                                           // head not all in
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",                 // repeated
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n folded\r\n\r\n{}",                           // folded
		"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n{}",                                     // not a length
		"HTTP/1.1 200 OK\r\nConnection: upgrade\r\nContent-Length: 2\r\n\r\n{}",               // another token
		"HTTP/1.1 200 OK\r\nX-Bad: a\x01b\r\nContent-Length: 2\r\n\r\n{}",                     // refused by net/http
		"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\n{}",                                        // bare LF
		"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\n{}",                              // no body
		"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\nRetry-After: 1\r\n\r\n{}", // headers wanted
	} {
		resp, br, err := read(in)
		if resp != nil || err != nil {
			t.Errorf("%q: read %+v, %v; want it left to net/http", in, resp, err)
			continue
		}
		if br.Buffered() != len(in) {
			t.Errorf("%q: %d bytes consumed, want none", in, len(in)-br.Buffered())
		}
	}
	if _, _, err := read(""); err != io.EOF {
		t.Errorf("no answer: %v, want EOF", err)
	}
}

// A HEAD's answer has no body whatever its length says: bytes after it
// are not read as one.
func TestH1_HeadAnswerHasNoBody(t *testing.T) {
	rb := startRaw(t, func(int) []string { return []string{okAnswer} }) // a body the server should not send
	c := h1Client(t, rb.url())
	req, _ := http.NewRequest(http.MethodHead, rb.url()+"/nodes/status", nil)
	resp, err := c.h1.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("HEAD: %d with body %q, want 200 and none", resp.StatusCode, body)
	}
}
