package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
	"github.com/neouptime/neo-uptime-node/report"
)

// faultyBackend answers GET /peers and PUT /nodes/status, each through a
// switchable fault.
type faultyBackend struct {
	mu        sync.Mutex
	peers     []byte
	getFault  string
	putFault  string
	accepted  []report.Status
	keysSeen  []string // API keys that reached the redirect target
	redirectT string
}

func (b *faultyBackend) set(get, put string) {
	b.mu.Lock()
	b.getFault, b.putFault = get, put
	b.mu.Unlock()
}

func (b *faultyBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Read the body first: only then does the server notice a client that
	// hangs up, and cancel r.Context().
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	fault := b.putFault
	if r.Method == http.MethodGet {
		fault = b.getFault
	}
	b.mu.Unlock()
	switch fault {
	case "500":
		w.WriteHeader(500)
		return
	case "401":
		w.WriteHeader(401)
		fmt.Fprint(w, `{"code":401,"message":"invalid api key"}`)
		return
	case "429":
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(429)
		return
	case "malformed":
		fmt.Fprint(w, `{"code":200,"data":{"peers":[`)
		return
	case "code500":
		fmt.Fprint(w, `{"code":500,"message":"database unavailable"}`)
		return
	case "hang":
		<-r.Context().Done()
		return
	case "trickle":
		w.WriteHeader(200)
		for _, c := range []byte(`{"code":200,"message":"Success"}`) {
			if _, err := w.Write([]byte{c}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Second):
			}
		}
		return
	case "huge":
		w.WriteHeader(200)
		chunk := bytes.Repeat([]byte(" "), 1<<20)
		for i := 0; i < 100; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		return
	case "redirect":
		http.Redirect(w, r, b.redirectT+r.URL.Path, http.StatusTemporaryRedirect)
		return
	}
	if r.Method == http.MethodGet {
		b.mu.Lock()
		w.Write(b.peers)
		b.mu.Unlock()
		return
	}
	var s report.Status
	json.Unmarshal(body, &s)
	b.mu.Lock()
	b.accepted = append(b.accepted, s)
	b.mu.Unlock()
	fmt.Fprint(w, `{"code":200,"message":"Success"}`)
}

func (b *faultyBackend) counts() map[int64][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := map[int64][]string{}
	for _, s := range b.accepted {
		m[s.ID] = append(m[s.ID], s.Status)
	}
	return m
}

// runInProcess runs one invocation through run() and returns its exit
// code, its JSON report and its log lines.
func runInProcess(t *testing.T, env map[string]string, args ...string) (int, RunReport, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"-output", "json", "-log-format", "json"}, args...), &out, &errb,
		func(k string) string { return env[k] })
	var rep RunReport
	_ = json.Unmarshal(out.Bytes(), &rep)
	return code, rep, errb.String()
}

func TestBackendFaults_NothingLostOrDoubled(t *testing.T) {
	node := startFake(t, &easytiertest.Fake{NetworkName: "n"})
	refused := easytiertest.FreePortBlock(t)
	peersBody, _ := json.Marshal(map[string]any{"code": 200, "data": map[string]any{"peers": []map[string]any{
		peer(1, node.TCPURL(), "n", ""), peer(2, fmt.Sprintf("tcp://127.0.0.254:%d", refused), "n", ""),
	}}})
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the redirect target was called with x-api-key %q", r.Header.Get("x-api-key"))
	}))
	defer other.Close()

	for _, tc := range []struct {
		fault, class string
	}{
		{"500", "server_error"}, {"401", "auth"}, {"429", "rate_limited"}, {"malformed", "bad_response"},
		{"code500", "rejected"}, {"hang", "timeout"}, {"trickle", "timeout"}, {"huge", "too_large"}, {"redirect", "redirect"},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			be := &faultyBackend{peers: peersBody, redirectT: strings.Replace(other.URL, "127.0.0.1", "localhost", 1)}
			srv := httptest.NewServer(be)
			defer srv.Close()
			env := map[string]string{"BACKEND_BASE_URL": srv.URL, "API_KEY": "k-123", "DATABASE_PATH": filepath.Join(t.TempDir(), "s.db")}
			args := []string{"-deadline", "4s", "-report-reserve", "2s", "-samples", "1"}

			// Run 1: the peer list comes through, every report fails.
			be.set("", tc.fault)
			start := time.Now()
			code, rep, logs := runInProcess(t, env, args...)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("run 1 took %v with a 4s deadline", took)
			}
			if code != exitFailed || rep.Undelivered != 2 {
				t.Errorf("run 1: exit %d, undelivered %d; want 1 and 2", code, rep.Undelivered)
			}
			if !strings.Contains(logs, `"err_class":"`+tc.class+`"`) {
				t.Errorf("run 1 logs lack err_class %s:\n%s", tc.class, logs)
			}
			// Run 2: the peer list fails the same way; the cached list is
			// used, and the healthy PUTs deliver the fresh results.
			be.set(tc.fault, "")
			code, rep, logs = runInProcess(t, env, args...)
			if code != exitOK || rep.PeerSource != "cache" {
				t.Errorf("run 2: exit %d, source %q; want 0 and cache\n%s", code, rep.PeerSource, logs)
			}
			if !strings.Contains(logs, `"err_class":"`+tc.class+`"`) {
				t.Errorf("run 2 logs lack err_class %s for the peer list", tc.class)
			}
			got := be.counts()
			if len(got[1]) != 1 || got[1][0] != "online" || len(got[2]) != 1 || got[2][0] != "offline" {
				t.Errorf("accepted reports = %v, want peer 1 online once and peer 2 offline once", got)
			}
			// Run 3: nothing left pending, nothing sent twice.
			be.set("", "")
			runInProcess(t, env, args...)
			if got := be.counts(); len(got[1]) != 2 || len(got[2]) != 2 {
				t.Errorf("after run 3 reports = %v, want exactly one more each", got)
			}
		})
	}
}

func TestBackendFaults_NoPeerListAtAll(t *testing.T) {
	for _, tc := range []struct{ name, class string }{{"refused", "refused"}, {"bad tls", "tls"}} {
		t.Run(tc.name, func(t *testing.T) {
			var url string
			switch tc.name {
			case "refused":
				url = fmt.Sprintf("http://127.0.0.1:%d", easytiertest.FreePortBlock(t))
			case "bad tls":
				srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
				defer srv.Close()
				url = srv.URL
			}
			env := map[string]string{"BACKEND_BASE_URL": url, "API_KEY": "k", "DATABASE_PATH": filepath.Join(t.TempDir(), "s.db")}
			start := time.Now()
			code, _, logs := runInProcess(t, env, "-deadline", "4s", "-report-reserve", "2s")
			if code != exitFailed || !strings.Contains(logs, `"err_class":"`+tc.class+`"`) {
				t.Errorf("exit %d, logs:\n%s\nwant exit 1 and err_class %s", code, logs, tc.class)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %v with a 4s deadline", time.Since(start))
			}
		})
	}
}

// TestSecrets_NeverLeak runs with distinctive secrets and searches every
// output: stdout, logs, the state file and the metrics file.
func TestSecrets_NeverLeak(t *testing.T) {
	const apiKey, netSecret, wrongSecret = "APIKEY-9f8e7d-LEAKCHECK", "NETSECRET-a1b2c3-LEAKCHECK", "WRONGSECRET-z9-LEAKCHECK"
	node := startFake(t, &easytiertest.Fake{NetworkName: "sec-net", NetworkSecret: netSecret, Encrypt: "aes-gcm"})
	peers, _ := json.Marshal(map[string]any{"code": 200, "data": map[string]any{"peers": []map[string]any{
		peer(1, node.TCPURL(), "sec-net", netSecret), peer(2, node.WSURL(), "sec-net", wrongSecret),
	}}})
	be := &faultyBackend{peers: peers}
	srv := httptest.NewServer(be)
	defer srv.Close()
	dir := t.TempDir()
	state, metrics := filepath.Join(dir, "s.db"), filepath.Join(dir, "metrics.prom")
	env := map[string]string{"BACKEND_BASE_URL": srv.URL, "API_KEY": apiKey, "DATABASE_PATH": state, "LOG_LEVEL": "debug"}
	be.set("", "500") // errors too must not carry secrets
	res := runBinary(t, env, "-output", "json", "-metrics-file", metrics, "-deadline", "4s", "-report-reserve", "2s")
	be.set("", "")
	res2 := runBinary(t, env, "-metrics-file", metrics, "-probe-timeout", "3s", "-ping-timeout", "1s")
	if len(be.counts()) != 2 {
		t.Fatalf("the runs did not report both peers: %v\n%s", be.counts(), res2.stderr)
	}
	stateBytes, _ := os.ReadFile(state)
	metricBytes, _ := os.ReadFile(metrics)
	for name, text := range map[string]string{"stdout": res.stdout + res2.stdout, "logs": res.stderr + res2.stderr,
		"state": string(stateBytes), "metrics": string(metricBytes)} {
		for _, s := range []string{apiKey, netSecret, wrongSecret} {
			if strings.Contains(text, s) {
				t.Errorf("%s contains the secret %q", name, s)
			}
		}
		if text == "" {
			t.Errorf("%s is empty: the check would prove nothing", name)
		}
	}
	if !strings.Contains(string(stateBytes), "sealed_secret") {
		t.Error("the state file has no sealed secrets: the peer cache was not written")
	}
}

// A backend that moved on its host is followed, and the run says where
// to point BACKEND_BASE_URL: each request costs two until then.
func TestRun_WarnsWhenTheBackendRedirects(t *testing.T) {
	node := startFake(t, &easytiertest.Fake{NetworkName: "n"})
	peersBody, _ := json.Marshal(map[string]any{"code": 200, "data": map[string]any{"peers": []map[string]any{
		peer(1, node.TCPURL(), "n", ""),
	}}})
	var statuses atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/old/"):
			http.Redirect(w, r, "/new/"+strings.TrimPrefix(r.URL.RequestURI(), "/old/"), http.StatusTemporaryRedirect)
		case r.URL.Path == "/new/peers":
			w.Write(peersBody)
		case r.URL.Path == "/new/nodes/status":
			io.Copy(io.Discard, r.Body)
			statuses.Add(1)
			fmt.Fprint(w, `{"code":200}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	env := map[string]string{"BACKEND_BASE_URL": srv.URL + "/old", "API_KEY": "k", "DATABASE_PATH": filepath.Join(t.TempDir(), "s.db")}
	code, rep, logs := runInProcess(t, env, "-samples", "1")
	if code != exitOK || rep.Reported != 1 || statuses.Load() != 1 {
		t.Fatalf("exit %d, reported %d, %d reports reached the new place; want 0, 1, 1\n%s", code, rep.Reported, statuses.Load(), logs)
	}
	want := "the backend redirects requests to " + srv.URL + "/new/"
	found := false
	for _, w := range rep.Warnings {
		found = found || strings.HasPrefix(w, want) && strings.HasSuffix(w, "set BACKEND_BASE_URL to where it now serves")
	}
	if !found || !strings.Contains(logs, "set BACKEND_BASE_URL to where it now serves") {
		t.Errorf("warnings %q and logs lack %q…:\n%s", rep.Warnings, want, logs)
	}
}
