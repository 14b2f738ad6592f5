package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// recorded is one request as the backend saw it.
type recorded struct {
	Method, Path, Query, APIKey, UserAgent, Accept, ContentType, Body string
}

type fakeBackend struct {
	mu      sync.Mutex
	reqs    []recorded
	handler func(w http.ResponseWriter, r *http.Request, n int)
}

func (f *fakeBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("x-api-key"), r.Header.Get("User-Agent"),
		r.Header.Get("Accept"), r.Header.Get("Content-Type"), string(b)})
	n := len(f.reqs)
	f.mu.Unlock()
	f.handler(w, r, n)
}

func newClient(t *testing.T, base string) *Client {
	t.Helper()
	c, err := New(Options{BaseURL: base, APIKey: "k-123", UserAgent: "neo-uptime-node/test", MaxElapsed: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestListTargets_Golden(t *testing.T) {
	for _, name := range []string{"peers_basic", "peers_odd", "peers_null_data", "peers_no_peers"} {
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			fb := &fakeBackend{handler: func(w http.ResponseWriter, r *http.Request, n int) { w.Write(body) }}
			srv := httptest.NewServer(fb)
			defer srv.Close()
			peers, warns, err := newClient(t, srv.URL+"/neo/").ListTargets(context.Background(), "eu west")
			if err != nil {
				t.Fatal(err)
			}
			type out struct {
				Request  recorded
				Peers    []Peer
				Secrets  []string
				Warnings []string
			}
			o := out{Request: fb.reqs[0], Peers: peers, Warnings: warns}
			for _, p := range peers {
				o.Secrets = append(o.Secrets, p.NetworkSecret) // json:"-" on Peer; shown here on purpose
			}
			got, _ := json.MarshalIndent(o, "", "  ")
			golden(t, name+".golden", append(got, '\n'))
		})
	}
}

func TestSubmit_GoldenRequest(t *testing.T) {
	fb := &fakeBackend{handler: func(w http.ResponseWriter, r *http.Request, n int) { fmt.Fprint(w, `{"code":200,"message":"Success"}`) }}
	srv := httptest.NewServer(fb)
	defer srv.Close()
	c := newClient(t, srv.URL)
	for _, s := range []Status{{ID: 1, Status: "online", ResponseTime: 25, PeerCount: 3}, {ID: 2, Status: "offline"}} {
		if err := c.Submit(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := json.MarshalIndent(fb.reqs, "", "  ")
	golden(t, "submit.golden", append(got, '\n'))
}

func TestEndpoint_Joining(t *testing.T) {
	for _, tc := range []struct{ base, want string }{
		{"https://api.example.com", "https://api.example.com/peers?region=a+b"},
		{"https://api.example.com/", "https://api.example.com/peers?region=a+b"},
		{"https://api.example.com/neo/", "https://api.example.com/neo/peers?region=a+b"},
		{"https://api.example.com/neo", "https://api.example.com/neo/peers?region=a+b"},
	} {
		c, err := New(Options{BaseURL: tc.base})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.endpoint("peers", map[string][]string{"region": {"a b"}}); got != tc.want {
			t.Errorf("endpoint(%q) = %s, want %s", tc.base, got, tc.want)
		}
	}
	for _, bad := range []string{"ftp://x", "api.example.com", "https://user:pw@x/", "https://x/?a=1", ""} {
		if _, err := New(Options{BaseURL: bad}); err == nil {
			t.Errorf("New(%q) = nil error, want error", bad)
		}
	}
}

func TestClient_Failures(t *testing.T) {
	for _, tc := range []struct {
		name     string
		handler  func(w http.ResponseWriter, r *http.Request, n int)
		wantReqs int
		check    func(error) bool
	}{
		{"500 then ok", func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				w.WriteHeader(500)
				return
			}
			fmt.Fprint(w, `{"code":200,"message":"Success"}`)
		}, 2, func(err error) bool { return err == nil }},
		{"429 with Retry-After", func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(429)
				return
			}
			fmt.Fprint(w, `{"code":200}`)
		}, 2, func(err error) bool { return err == nil }},
		{"401 is permanent", func(w http.ResponseWriter, r *http.Request, n int) {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"code":401,"message":"bad key"}`)
		}, 1, func(err error) bool {
			var he *HTTPError
			return errors.As(err, &he) && he.Status == 401 && strings.Contains(err.Error(), "bad key")
		}},
		{"2xx with code 500", func(w http.ResponseWriter, r *http.Request, n int) {
			fmt.Fprint(w, `{"code":500,"message":"db down"}`)
		}, 1, func(err error) bool {
			var he *HTTPError
			return errors.As(err, &he) && he.Code == 500 && strings.Contains(err.Error(), "db down")
		}},
		{"malformed json", func(w http.ResponseWriter, r *http.Request, n int) { fmt.Fprint(w, `{"code":`) }, 1,
			func(err error) bool { return errors.Is(err, ErrBadEnvelope) }},
		{"body too large", func(w http.ResponseWriter, r *http.Request, n int) {
			w.Write(bytes.Repeat([]byte(" "), 5<<20))
		}, 1, func(err error) bool { return errors.Is(err, ErrBodyTooLarge) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := &fakeBackend{handler: tc.handler}
			srv := httptest.NewServer(fb)
			defer srv.Close()
			start := time.Now()
			err := newClient(t, srv.URL).Submit(context.Background(), Status{ID: 1, Status: "online", ResponseTime: 1})
			if !tc.check(err) {
				t.Errorf("Submit = %v", err)
			}
			if len(fb.reqs) != tc.wantReqs {
				t.Errorf("requests = %d, want %d", len(fb.reqs), tc.wantReqs)
			}
			if tc.name == "429 with Retry-After" && time.Since(start) < time.Second {
				t.Errorf("retried after %v, before the server's Retry-After of 1s", time.Since(start))
			}
		})
	}
}

func TestClient_RedirectKeepsKeyHome(t *testing.T) {
	var leaked []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked = append(leaked, r.Header.Get("x-api-key"))
		fmt.Fprint(w, `{"code":200,"data":null}`)
	}))
	defer other.Close()
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, strings.Replace(other.URL, "127.0.0.1", "localhost", 1)+"/peers", http.StatusFound)
	}))
	defer home.Close()
	_, _, err := newClient(t, home.URL).ListTargets(context.Background(), "")
	if !errors.Is(err, ErrCrossRedirect) {
		t.Errorf("ListTargets = %v, want ErrCrossRedirect", err)
	}
	if len(leaked) != 0 {
		t.Errorf("the other host received the API key %q", leaked)
	}
}

func TestResponseTimeMS(t *testing.T) {
	for _, tc := range []struct{ us, want int64 }{{0, 1}, {400, 1}, {1499, 1}, {1500, 2}, {25_400, 25}, {25_500, 26}} {
		if got := ResponseTimeMS(tc.us); got != tc.want {
			t.Errorf("ResponseTimeMS(%d) = %d, want %d", tc.us, got, tc.want)
		}
	}
}

// A body of announced length is read into one buffer; the connection must
// still be reused (the transport sees the body's end), a short body must
// fail, and the cap must hold.
func TestClient_BodyOfAnnouncedLength(t *testing.T) {
	var peers []string
	for i := 1; i <= 1000; i++ {
		peers = append(peers, fmt.Sprintf(`{"id":%d,"host":"node%d.example.net","port":11010,"protocol":"tcp"}`, i, i))
	}
	list := []byte(`{"code":200,"message":"ok","data":{"peers":[` + strings.Join(peers, ",") + `]}}`)
	var short atomic.Bool
	fb := &fakeBackend{handler: func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Content-Length", fmt.Sprint(len(list)))
		if short.Load() {
			w.Write(list[:len(list)/2]) // the server then hangs up
			return
		}
		w.Write(list)
	}}
	srv := httptest.NewUnstartedServer(fb)
	var cc connCounter
	srv.Config.ConnState = cc.hook
	srv.Start()
	defer srv.Close()
	c := newClient(t, srv.URL)
	for i := 0; i < 3; i++ {
		got, _, err := c.ListTargets(context.Background(), "")
		if err != nil || len(got) != 1000 || got[999].Host != "node1000.example.net" {
			t.Fatalf("ListTargets = %d peers, %v", len(got), err)
		}
	}
	if n := cc.opened.Load(); n != 1 {
		t.Errorf("3 fetches opened %d connections, want 1 (the body's end must be seen)", n)
	}

	short.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, _, err := c.ListTargets(ctx, ""); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short body: err = %v, want io.ErrUnexpectedEOF", err)
	}

	short.Store(false)
	small, err := New(Options{BaseURL: srv.URL, APIKey: "k", MaxPeersBody: int64(len(list) - 1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := small.ListTargets(context.Background(), ""); !errors.Is(err, ErrBodyTooLarge) {
		t.Errorf("body one byte over the cap: err = %v, want ErrBodyTooLarge", err)
	}
}

// TestClient_CertificateFailureIsPermanent: a backend whose certificate
// does not verify gets one attempt, not retries until the deadline, and
// the error is classed tls.
func TestClient_CertificateFailureIsPermanent(t *testing.T) {
	var cc connCounter
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = cc.hook
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake errors are expected
	srv.StartTLS()
	defer srv.Close()
	start := time.Now()
	err := newClient(t, srv.URL).Submit(context.Background(), Status{ID: 1, Status: "online", ResponseTime: 1})
	if ErrorClass(err) != "tls" {
		t.Errorf("Submit = %v (class %q), want class tls", err, ErrorClass(err))
	}
	if n := cc.opened.Load(); n != 1 {
		t.Errorf("%d connections to a backend whose certificate does not verify, want 1 (no retry)", n)
	}
	if time.Since(start) > time.Second {
		t.Errorf("gave up after %v", time.Since(start))
	}
}

// TestClient_OutOfTimeKeepsTheCause: when the deadline cuts a retry
// short, the error names what failed before it (here a 503), not only
// the deadline.
func TestClient_OutOfTimeKeepsTheCause(t *testing.T) {
	fb := &fakeBackend{handler: func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			w.WriteHeader(503)
			return
		}
		<-r.Context().Done() // hangs until the client gives up
	}}
	srv := httptest.NewServer(fb)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	err := newClient(t, srv.URL).Submit(ctx, Status{ID: 1, Status: "online", ResponseTime: 1})
	if ErrorClass(err) != "server_error" || !strings.Contains(fmt.Sprint(err), "out of time after retries") {
		t.Errorf("Submit = %v (class %q), want the 503 kept as the cause", err, ErrorClass(err))
	}
	fb.mu.Lock()
	n := len(fb.reqs)
	fb.mu.Unlock()
	if n != 2 {
		t.Errorf("%d requests, want 2 (the 503, then one cut by the deadline)", n)
	}
}

// A status report's body is json.Marshal's, byte for byte.
func TestStatus_MarshalAsEncodingJSON(t *testing.T) {
	for _, s := range []Status{
		{}, {ID: 1, Status: "online", ResponseTime: 25, PeerCount: 3},
		{ID: -9223372036854775808, Status: "offline", ResponseTime: -1, PeerCount: -2147483648},
		{ID: 9223372036854775807, Status: "online", ResponseTime: 9223372036854775807, PeerCount: 2147483647},
		{ID: 2, Status: "<offline> & \"x\"\x00\xff"}, {ID: 3, Status: "Online"},
	} {
		got, err := s.marshal()
		want, werr := json.Marshal(s)
		if err != nil || werr != nil || string(got) != string(want) {
			t.Errorf("%+v: %s, %v; json.Marshal %s, %v", s, got, err, want, werr)
		}
	}
}

// deadlineOnly is a context whose deadline has passed before its own
// timer has ended it.
type deadlineOnly struct {
	context.Context
	at time.Time
}

func (d deadlineOnly) Deadline() (time.Time, bool) { return d.at, true }

// An attempt cut short by a conn deadline taken from the call's is the
// deadline's doing, even in the moment before ctx.Err says so: the
// cause kept for "out of time after retries" is the attempt before it
// (TestClient_OutOfTimeKeepsTheCause failed on a loaded machine when a
// dial's deadline fired first).
func TestPastDeadline(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		ctx  context.Context
		want bool
	}{
		{context.Background(), false},
		{deadlineOnly{context.Background(), now.Add(time.Hour)}, false},
		{deadlineOnly{context.Background(), now.Add(-time.Millisecond)}, true},
		{deadlineOnly{context.Background(), now}, true},
	} {
		if got := pastDeadline(c.ctx); got != c.want {
			dl, _ := c.ctx.Deadline()
			t.Errorf("deadline %v from now: pastDeadline = %v", dl.Sub(now), got)
		}
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if !pastDeadline(ended) {
		t.Error("a canceled context is not past its deadline")
	}
}
