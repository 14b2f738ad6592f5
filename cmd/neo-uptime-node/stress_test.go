package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
)

// hostPort splits a fake node URL.
func splitURL(u string) (string, int) {
	h, p, _ := net.SplitHostPort(strings.TrimSuffix(strings.SplitN(u, "://", 2)[1], "/"))
	n, _ := strconv.Atoi(p)
	return h, n
}

// TestHostilePeerList feeds 100,000 entries: junk of every kind, IPv6
// forms, duplicates, unknown protocols, the cloud metadata address, and
// 1,500 real targets. The run must finish, probe only the valid ones and
// report exactly those.
func TestHostilePeerList(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	var nodes []*easytiertest.Fake
	for i := 0; i < 5; i++ {
		f := startFake(t, &easytiertest.Fake{NetworkName: "n", ListenIP: fmt.Sprintf("127.0.1.%d", i+1)})
		nodes = append(nodes, f)
	}
	var peers []any
	valid := 0
	for i := 0; i < 100_000; i++ {
		id := i + 1
		switch {
		case i < 1500:
			h, p := splitURL(nodes[i%len(nodes)].TCPURL())
			peers = append(peers, map[string]any{"id": id, "host": h, "port": p, "protocol": "tcp", "network_name": "n"})
			valid++
		case i < 1510:
			peers = append(peers, map[string]any{"id": 1, "host": "127.0.0.1", "port": 1}) // duplicate ids
		case i == 1510:
			peers = append(peers, map[string]any{"id": id, "host": "169.254.169.254", "port": 80, "protocol": "tcp"})
		case i == 1511:
			peers = append(peers, map[string]any{"id": id, "host": "fd00:ec2::254", "port": 80, "protocol": "tcp"})
		case i < 1520:
			forms := []string{"[::1]", "::ffff:127.0.0.254", "0:0:0:0:0:0:0:1", "[fe80::1%25lo]", "::", "[::127.0.0.254]", "2001:db8::1:0:0:1", "[2001:db8::1]:99"}
			peers = append(peers, map[string]any{"id": id, "host": forms[i%len(forms)], "port": 11010, "protocol": "tcp"})
		case i < 2000:
			peers = append(peers, map[string]any{"id": id, "name": strings.Repeat("\x1b[31m\u0000", 400), "host": "x\n.example", "port": -1})
		case i < 3000:
			peers = append(peers, map[string]any{"id": id, "host": "h", "port": 65536 + i})
		default:
			peers = append(peers, map[string]any{"id": id, "host": "198.51.100.1", "port": 11012, "protocol": []string{"quic", "wg", "faketcp", "QUIC", "http"}[i%5]})
		}
	}
	body, _ := json.Marshal(map[string]any{"code": 200, "data": map[string]any{"peers": peers}})
	be := &faultyBackend{peers: body}
	srv := httptest.NewServer(be)
	defer srv.Close()
	env := map[string]string{"BACKEND_BASE_URL": srv.URL, "API_KEY": "k", "DATABASE_PATH": filepath.Join(t.TempDir(), "s.db"), "NEO_DEBUG_PEAKS": "1"}
	res := runBinary(t, env, "-output", "json", "-samples", "1", "-concurrency", "256", "-deadline", "60s", "-probe-timeout", "3s", "-ping-timeout", "1s", "-log-level", "warn")
	if res.code != exitOK && res.code != exitDown {
		t.Fatalf("exit %d\n%s", res.code, lastLines(res.stderr, 20))
	}
	got := be.counts()
	for i := 1; i <= 1500; i++ {
		if len(got[int64(i)]) != 1 || got[int64(i)][0] != "online" {
			t.Fatalf("valid peer %d reports = %v, want one online", i, got[int64(i)])
		}
	}
	for id, r := range got {
		if id > 1500 && id <= 1512 || id > 1520 {
			t.Errorf("peer %d should not have been reported: %v", id, r)
		}
	}
	classes := map[int64]string{}
	for _, p := range res.report.Peers {
		classes[p.ID] = p.Reason
	}
	if classes[1511] != "target_denied" || classes[1512] != "target_denied" {
		t.Errorf("metadata addresses: %q, %q; want target_denied", classes[1511], classes[1512])
	}
	if classes[5000] != "unsupported_protocol" {
		t.Errorf("quic peer: %q, want unsupported_protocol", classes[5000])
	}
	if len(res.report.Warnings) < 1000 {
		t.Errorf("only %d warnings for ~1,500 malformed peers", len(res.report.Warnings))
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// peaksOf reads the NEO_DEBUG_PEAKS line from the logs.
func peaksOf(t *testing.T, stderr string) (goroutines, fds int) {
	t.Helper()
	i := strings.LastIndex(stderr, `{"peak_`)
	if i < 0 {
		t.Fatalf("no peaks line in:\n%s", lastLines(stderr, 5))
	}
	var pk struct {
		G int `json:"peak_goroutines"`
		F int `json:"peak_fds"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(stderr[i:], "\n", 2)[0]), &pk); err != nil {
		t.Fatal(err)
	}
	return pk.G, pk.F
}

// TestResourceBounds: goroutines and descriptors are bounded by
// -concurrency, not by the number of peers.
func TestResourceBounds(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	node := startFake(t, &easytiertest.Fake{NetworkName: "n", Delay: 20 * time.Millisecond})
	h, p := splitURL(node.TCPURL())
	var peers []map[string]any
	for i := 0; i < 3000; i++ {
		peers = append(peers, map[string]any{"id": i + 1, "host": h, "port": p, "protocol": "tcp", "network_name": "n"})
	}
	body, _ := json.Marshal(map[string]any{"code": 200, "data": map[string]any{"peers": peers}})
	srv := httptest.NewServer(&faultyBackend{peers: body})
	defer srv.Close()
	for _, conc := range []int{10, 100} {
		env := map[string]string{"BACKEND_BASE_URL": srv.URL, "API_KEY": "k", "DATABASE_PATH": filepath.Join(t.TempDir(), "s.db"), "NEO_DEBUG_PEAKS": "1"}
		res := runBinary(t, env, "-samples", "1", "-route-wait", "0", "-concurrency", strconv.Itoa(conc), "-report-concurrency", "8", "-deadline", "60s", "-log-level", "error")
		if res.code != exitOK {
			t.Fatalf("exit %d\n%s", res.code, lastLines(res.stderr, 10))
		}
		g, f := peaksOf(t, res.stderr)
		// Per probe: one socket, the worker and its reader goroutine. The
		// rest (runtime, HTTP pool of 8, state file) is a small constant.
		if f > conc+40 {
			t.Errorf("-concurrency %d: peak descriptors %d for 3,000 peers, want <= %d", conc, f, conc+40)
		}
		if g > 3*conc+60 {
			t.Errorf("-concurrency %d: peak goroutines %d for 3,000 peers, want <= %d", conc, g, 3*conc+60)
		}
	}
}

// TestCrashMidRunRecovers kills a run (kill -9, as a Lambda timeout or OOM
// would) while it holds the lease and has undelivered reports from an
// earlier run; later runs wait for the lease to expire, then deliver. The
// killed run has already delivered the result it had: reports go out as
// probes finish, not after the slowest one.
func TestCrashMidRunRecovers(t *testing.T) {
	fast := startFake(t, &easytiertest.Fake{NetworkName: "n"})
	silent := startFake(t, &easytiertest.Fake{Behavior: easytiertest.AcceptSilence})
	be := &testBackend{failPuts: true, peers: []map[string]any{peer(1, fast.TCPURL(), "n", "")}}
	srv := httptest.NewServer(be)
	defer srv.Close()
	env := map[string]string{"BACKEND_BASE_URL": srv.URL + "/api", "API_KEY": "test-key-9b1", "DATABASE_PATH": filepath.Join(t.TempDir(), "s.db")}
	args := []string{"-output", "json", "-deadline", "4s", "-report-reserve", "2s", "-samples", "1", "-lease-ttl", "3s"}

	// Run 1 measures peer 1 but cannot deliver: the report is pending.
	if res := runBinary(t, env, args...); res.report.Undelivered != 1 {
		t.Fatalf("run 1 undelivered = %d, want 1\n%s", res.report.Undelivered, res.stderr)
	}
	// Run 2 is killed while probing the silent node with the lease held.
	be.mu.Lock()
	be.failPuts = false
	be.peers = append(be.peers, peer(2, silent.TCPURL(), "n", ""))
	be.mu.Unlock()
	cmd := exec.Command(binPath, args...)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "PATH="+os.Getenv("PATH"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if got := be.reports(); len(got[1]) != 1 || got[1][0].Status != "online" {
		t.Errorf("peer 1 reports after the killed run = %v, want its one online result, delivered before the kill", got[1])
	}
	// Run 3, at once: the dead run's lease still holds.
	if res := runBinary(t, env, args...); !res.report.Skipped {
		t.Errorf("run 3 did not see the crashed run's lease:\n%s", res.stderr)
	}
	// Run 4, after the lease expired: recovers; run 1's report, still
	// pending since run 2 never saved, is replaced by run 4's own result
	// and never sent.
	time.Sleep(3 * time.Second)
	res := runBinary(t, env, args...)
	if res.code != exitOK || res.report.Skipped {
		t.Fatalf("run 4: exit %d, skipped %v\n%s", res.code, res.report.Skipped, res.stderr)
	}
	if got := be.reports(); len(got[1]) != 2 || got[1][1].Status != "online" {
		t.Errorf("peer 1 reports = %v, want two online (runs 2 and 4)", got[1])
	}
	if res.report.PendingReplaced != 1 || res.report.PendingDelivered != 0 {
		t.Errorf("run 4 pending replaced, delivered = %d, %d; want 1, 0", res.report.PendingReplaced, res.report.PendingDelivered)
	}
}
