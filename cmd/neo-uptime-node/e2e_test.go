package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
	"github.com/neouptime/neo-uptime-node/report"
)

// binPath is the neo-uptime-node binary built once for these tests.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "neo-bin-")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "neo-uptime-node")
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the binary: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startFake starts a fake EasyTier node that the test stops at its end.
func startFake(t *testing.T, f *easytiertest.Fake) *easytiertest.Fake {
	t.Helper()
	f, err := easytiertest.StartFake(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// testBackend serves a peer list and records status reports.
type testBackend struct {
	mu       sync.Mutex
	peers    []map[string]any
	failPuts bool
	puts     []report.Status // accepted reports
	failed   int             // PUTs answered 500
	gets     int
}

func (b *testBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.Header.Get("x-api-key") != "test-key-9b1" {
		w.WriteHeader(401)
		return
	}
	switch {
	case r.Method == "GET" && r.URL.Path == "/api/peers":
		b.gets++
		body, _ := json.Marshal(map[string]any{"code": 200, "message": "Success", "data": map[string]any{"peers": b.peers}})
		w.Write(body)
	case r.Method == "PUT" && r.URL.Path == "/api/nodes/status":
		if b.failPuts {
			b.failed++
			w.WriteHeader(500)
			return
		}
		var s report.Status
		if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
			w.WriteHeader(400)
			return
		}
		b.puts = append(b.puts, s)
		fmt.Fprint(w, `{"code":200,"message":"Success"}`)
	default:
		w.WriteHeader(404)
	}
}

func (b *testBackend) reports() map[int64][]report.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := map[int64][]report.Status{}
	for _, p := range b.puts {
		m[p.ID] = append(m[p.ID], p)
	}
	return m
}

func peer(id int, target, network, secret string) map[string]any {
	u := strings.SplitN(target, "://", 2)
	host, port, _ := net.SplitHostPort(strings.TrimSuffix(u[1], "/"))
	p, _ := strconv.Atoi(port)
	return map[string]any{"id": id, "name": fmt.Sprintf("peer %d", id), "host": host, "port": p, "protocol": u[0],
		"network_name": network, "network_secret": secret}
}

type runResult struct {
	code   int
	stdout string
	stderr string
	report RunReport
}

// runBinary runs the built binary with env and args.
func runBinary(t *testing.T, env map[string]string, args ...string) runResult {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := runResult{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(args, " "), "-output json") || contains(args, "json") {
		_ = json.Unmarshal(out.Bytes(), &res.report)
	}
	return res
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestRun_EndToEnd(t *testing.T) {
	real := easytiertest.StartReal(t, easytiertest.RealConfig{NetworkName: "e2e-net", NetworkSecret: "e2e-secret-51", Hostname: "e2e-real"})
	healthy := startFake(t, &easytiertest.Fake{NetworkName: "fake-net", NetworkSecret: "f", Foreign: []string{"a", "b"}, Encrypt: "aes-gcm"})
	blackhole := startFake(t, &easytiertest.Fake{Behavior: easytiertest.AcceptSilence})
	slow := startFake(t, &easytiertest.Fake{NetworkName: "slow-net", Delay: 6 * time.Second})
	refused := easytiertest.FreePortBlock(t)

	be := &testBackend{peers: []map[string]any{
		peer(1, real.URL("tcp"), "e2e-net", "e2e-secret-51"),
		peer(2, real.URL("wss"), "e2e-net", "e2e-secret-51"),
		peer(3, real.URL("tcp"), "e2e-net", "wrong-secret"),
		peer(4, healthy.TCPURL(), "fake-net", "f"),
		peer(5, fmt.Sprintf("tcp://127.0.0.254:%d", refused), "n", ""),
		peer(6, blackhole.UDPURL(), "n", ""),
		peer(7, slow.TCPURL(), "slow-net", ""),
	}}
	srv := httptest.NewServer(be)
	defer srv.Close()
	env := map[string]string{"BACKEND_BASE_URL": srv.URL + "/api/", "API_KEY": "test-key-9b1",
		"DATABASE_PATH": filepath.Join(t.TempDir(), "state.db"), "LOG_LEVEL": "debug"}
	// Job deadline 4.5s: the udp blackhole gives up its SACK wait at 3s, the
	// slow node's pongs (6s) never arrive before the deadline.
	res := runBinary(t, env, "-output", "json", "-deadline", "5.5s", "-report-reserve", "1s",
		"-probe-timeout", "8s", "-ping-timeout", "5s", "-samples", "2")
	if res.code != exitOK {
		t.Fatalf("exit code = %d, want 0\nstderr:\n%s", res.code, res.stderr)
	}
	want := map[int64]report.Status{
		1: {ID: 1, Status: "online"},
		2: {ID: 2, Status: "online"},
		3: {ID: 3, Status: "offline"},
		4: {ID: 4, Status: "online", PeerCount: 2},
		5: {ID: 5, Status: "offline"},
		6: {ID: 6, Status: "offline"},
	}
	got := be.reports()
	var ids []int64
	for id := range got {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	if len(got) != len(want) {
		t.Errorf("reported peers %v, want %d peers (the slow peer 7 must not be reported)", ids, len(want))
	}
	for id, w := range want {
		g := got[id]
		if len(g) != 1 {
			t.Errorf("peer %d reported %d times, want once", id, len(g))
			continue
		}
		if g[0].Status != w.Status || g[0].PeerCount != w.PeerCount {
			t.Errorf("peer %d reported %+v, want status %s peer_count %d", id, g[0], w.Status, w.PeerCount)
		}
		if w.Status == "online" && (g[0].ResponseTime < 1 || g[0].ResponseTime > 100) {
			t.Errorf("peer %d response_time = %d, want 1..100 ms on loopback", id, g[0].ResponseTime)
		}
		if w.Status == "offline" && g[0].ResponseTime != 0 {
			t.Errorf("peer %d offline with response_time %d, want 0", id, g[0].ResponseTime)
		}
	}
	classes := map[int64]string{}
	for _, p := range res.report.Peers {
		classes[p.ID] = p.Class + "/" + p.Reason
	}
	for id, c := range map[int64]string{3: "protocol/wrong_secret", 5: "refused/refused", 6: "timeout/", 7: "canceled/job_deadline"} {
		if !strings.HasPrefix(classes[id], c) {
			t.Errorf("peer %d class = %q, want %q", id, classes[id], c)
		}
	}
	if strings.Contains(res.stdout+res.stderr, "e2e-secret-51") || strings.Contains(res.stdout+res.stderr, "test-key-9b1") {
		t.Error("a secret appears in the output or logs")
	}

	// The same run with -fail-on-down exits 3.
	res = runBinary(t, env, "-deadline", "5.5s", "-report-reserve", "1s", "-probe-timeout", "8s", "-ping-timeout", "5s", "-samples", "2", "-fail-on-down")
	if res.code != exitDown {
		t.Errorf("exit code with -fail-on-down = %d, want 3\n%s", res.code, res.stderr)
	}
}

func TestRun_UndeliveredReportsSurvive(t *testing.T) {
	healthy := startFake(t, &easytiertest.Fake{NetworkName: "n"})
	refused := easytiertest.FreePortBlock(t)
	be := &testBackend{failPuts: true, peers: []map[string]any{
		peer(1, healthy.TCPURL(), "n", ""),
		peer(2, fmt.Sprintf("tcp://127.0.0.254:%d", refused), "n", ""),
	}}
	srv := httptest.NewServer(be)
	defer srv.Close()
	env := map[string]string{"BACKEND_BASE_URL": srv.URL + "/api", "API_KEY": "test-key-9b1",
		"DATABASE_PATH": filepath.Join(t.TempDir(), "state.db"), "PEER_FETCH_INTERVAL": "0"}
	args := []string{"-output", "json", "-deadline", "4s", "-report-reserve", "2s", "-samples", "1"}

	res := runBinary(t, env, args...)
	if res.code != exitFailed {
		t.Errorf("first run exit = %d, want 1 (no report delivered)\n%s", res.code, res.stderr)
	}
	if res.report.Undelivered != 2 || be.failed == 0 {
		t.Fatalf("first run undelivered = %d (failed PUTs %d), want 2", res.report.Undelivered, be.failed)
	}
	// Second run: the backend works again and no longer lists peer 2, so
	// only the pending report can deliver its measurement.
	be.mu.Lock()
	be.failPuts, be.peers = false, be.peers[:1]
	be.mu.Unlock()
	res = runBinary(t, env, args...)
	if res.code != exitOK {
		t.Fatalf("second run exit = %d\n%s", res.code, res.stderr)
	}
	got := be.reports()
	if len(got[1]) != 1 || got[1][0].Status != "online" {
		t.Errorf("peer 1 reports = %+v, want one fresh online", got[1])
	}
	if len(got[2]) != 1 || got[2][0].Status != "offline" {
		t.Errorf("peer 2 reports = %+v, want the first run's offline, once", got[2])
	}
	if res.report.PendingDelivered != 1 || res.report.PendingReplaced != 1 {
		t.Errorf("pending delivered, replaced = %d, %d; want 1, 1", res.report.PendingDelivered, res.report.PendingReplaced)
	}
	// A third run has nothing pending left to send.
	res = runBinary(t, env, args...)
	if got := be.reports(); len(got[2]) != 1 || res.report.PendingDelivered != 0 {
		t.Errorf("third run re-sent peer 2 (%d reports) or pending (%d)", len(got[2]), res.report.PendingDelivered)
	}
}

// TestRun_LeaseOneRunAtATime starts 2 and then 10 processes together on
// one state file: exactly one probes and reports, the others exit 0 saying
// who holds the lease until when.
func TestRun_LeaseOneRunAtATime(t *testing.T) {
	node := startFake(t, &easytiertest.Fake{NetworkName: "n", Delay: 300 * time.Millisecond})
	for _, n := range []int{2, 10} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			be := &testBackend{peers: []map[string]any{peer(1, node.TCPURL(), "n", ""), peer(2, node.UDPURL(), "n", "")}}
			srv := httptest.NewServer(be)
			defer srv.Close()
			env := map[string]string{"BACKEND_BASE_URL": srv.URL + "/api", "API_KEY": "test-key-9b1",
				"DATABASE_PATH": filepath.Join(t.TempDir(), "state.db")}
			var wg sync.WaitGroup
			results := make([]runResult, n)
			for i := range results {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					results[i] = runBinary(t, env, "-output", "json", "-samples", "3")
				}(i)
			}
			wg.Wait()
			ran := 0
			for _, r := range results {
				if r.code != exitOK {
					t.Errorf("exit code = %d, want 0\n%s", r.code, r.stderr)
				}
				if !r.report.Skipped {
					ran++
				} else if !strings.Contains(r.stderr, "another run holds the lease") || !strings.Contains(r.stderr, "lease_until") {
					t.Errorf("skipped run did not say who holds the lease until when:\n%s", r.stderr)
				}
			}
			got := be.reports()
			if ran != 1 || len(got[1]) != 1 || len(got[2]) != 1 {
				t.Errorf("%d of %d runs probed, reports %v; want one run and one report per peer", ran, n, got)
			}
		})
	}
}

func TestRun_CorruptStateIsKept(t *testing.T) {
	be := &testBackend{}
	srv := httptest.NewServer(be)
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(path, []byte(`{"schema":"neo-uptime-node/state","version":1,"history":{`), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runBinary(t, map[string]string{"BACKEND_BASE_URL": srv.URL, "API_KEY": "test-key-9b1", "DATABASE_PATH": path})
	if res.code != exitFailed || !strings.Contains(res.stderr, "state is corrupt") {
		t.Errorf("exit %d, stderr %q; want 1 and a clear corrupt-state error", res.code, res.stderr)
	}
	b, _ := os.ReadFile(path)
	if string(b) != `{"schema":"neo-uptime-node/state","version":1,"history":{` {
		t.Errorf("corrupt state file was changed to %q", b)
	}
	os.WriteFile(path, []byte(`{"schema":"neo-uptime-node/state","version":99}`), 0o600)
	res = runBinary(t, map[string]string{"BACKEND_BASE_URL": srv.URL, "API_KEY": "test-key-9b1", "DATABASE_PATH": path})
	if res.code != exitFailed || !strings.Contains(res.stderr, "unknown schema or version") {
		t.Errorf("exit %d, stderr %q; want 1 and an unknown-version error", res.code, res.stderr)
	}
	if be.gets != 0 {
		t.Errorf("the backend was called %d times with unreadable state", be.gets)
	}
}

func TestRun_LoopStopsOnSIGTERMAfterReporting(t *testing.T) {
	fast := startFake(t, &easytiertest.Fake{NetworkName: "n"})
	// A node that never answers keeps every run probing until its deadline.
	silent := startFake(t, &easytiertest.Fake{Behavior: easytiertest.AcceptSilence})
	be := &testBackend{peers: []map[string]any{peer(1, fast.TCPURL(), "n", ""), peer(2, silent.TCPURL(), "n", "")}}
	srv := httptest.NewServer(be)
	defer srv.Close()
	cmd := exec.Command(binPath, "-every", "1s", "-deadline", "30s", "-probe-timeout", "20s", "-samples", "1")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "BACKEND_BASE_URL=" + srv.URL + "/api", "API_KEY=test-key-9b1",
		"DATABASE_PATH=" + filepath.Join(t.TempDir(), "s.db"), "NEO_LOG_FORMAT=json"}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Peer 1 answers in milliseconds; peer 2 keeps the run in its probe phase.
	time.Sleep(1500 * time.Millisecond)
	start := time.Now()
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	if err != nil {
		t.Fatalf("exit: %v\n%s", err, errb.String())
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("took %v to stop after the signal", took)
	}
	got := be.reports()
	if len(got[1]) != 1 || got[1][0].Status != "online" {
		t.Errorf("peer 1 reports = %v, want its measurement delivered before exit", got[1])
	}
	if len(got[2]) != 0 {
		t.Errorf("peer 2 reported %v although its probe was cut short", got[2])
	}
	if !strings.Contains(errb.String(), "finishing the report pass") {
		t.Errorf("no signal log line:\n%s", errb.String())
	}
}

// Between loop-mode runs further apart than kept connections are reused
// (report.IdleFor), none is left open: it would only sit there, half
// closed by the backend once its keep-alive ends.
func TestRun_LoopClosesBackendConnectionsBetweenRuns(t *testing.T) {
	node := startFake(t, &easytiertest.Fake{NetworkName: "n"})
	be := &testBackend{peers: []map[string]any{peer(1, node.TCPURL(), "n", "")}}
	srv, open := startCountingConns(be)
	defer srv.Close()
	cmd := exec.Command(binPath, "-every", "1m", "-samples", "1")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "BACKEND_BASE_URL=" + srv.URL + "/api", "API_KEY=test-key-9b1",
		"DATABASE_PATH=" + filepath.Join(t.TempDir(), "s.db")}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(be.reports()[1]) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if len(be.reports()[1]) == 0 {
		t.Fatal("the first run reported nothing")
	}
	for open.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := open.Load(); n != 0 {
		t.Fatalf("%d connections to the backend still open between runs", n)
	}
}

// startCountingConns serves h and counts its open connections.
func startCountingConns(h http.Handler) (*httptest.Server, *atomic.Int32) {
	open := new(atomic.Int32)
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	return srv, open
}
