package easytiertest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireEnv, when set to 1, turns a missing real node into a test failure.
// CI sets it so the conformance tests can never be skipped silently.
const RequireEnv = "NEO_REQUIRE_REAL_NODE"

// PythonEnv names the Python interpreter that has easytier-pyo3 installed;
// by default the repository's .venv is used.
const PythonEnv = "NEO_EASYTIER_PYTHON"

// RealConfig configures a real node.
type RealConfig struct {
	Port          int               `json:"port"` // tcp/udp; ws = +1, wss = +2
	NetworkName   string            `json:"network_name"`
	NetworkSecret string            `json:"network_secret"`
	Hostname      string            `json:"hostname"`
	Peers         []string          `json:"peers,omitempty"`
	SecureMode    bool              `json:"secure_mode,omitempty"`
	Flags         map[string]any    `json:"flags,omitempty"`
	Extra         map[string]string `json:"-"`
}

// RealNode is a running EasyTier node from the easytier-pyo3 package.
type RealNode struct {
	PeerID    uint32   `json:"peer_id"`
	Version   string   `json:"version"`
	Listeners []string `json:"listeners"`
	Hostname  string   `json:"hostname"`
	Port      int      `json:"-"`

	mu    sync.Mutex
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// Python returns the interpreter to use, or "" if none has easytier-pyo3.
func Python() string {
	if p := os.Getenv(PythonEnv); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	p := filepath.Join(root, ".venv", "bin", "python")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// FreePortBlock finds a base port with base, base+1 and base+2 free on
// loopback for both tcp and udp.
func FreePortBlock(t testing.TB) int {
	t.Helper()
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FreePort is FreePortBlock outside tests. It looks below the kernel's
// ephemeral range, where the client sockets of concurrent tests (thousands
// in the stress tests and benchmarks) cannot take base+1 or base+2 from
// under it.
func FreePort() (int, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	if low <= 12000 {
		low = 32768 // an unusual range: fall back to the common one's floor
	}
	for i := 0; i < 200; i++ {
		base := 10000 + rand.IntN(low-10000-3)
		if blockFree(base) {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no free port block on loopback below %d", low)
}

func blockFree(base int) bool {
	for p := base; p <= base+2; p++ {
		tl, err1 := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		ul, err2 := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if tl != nil {
			tl.Close()
		}
		if ul != nil {
			ul.Close()
		}
		if err1 != nil || err2 != nil {
			return false
		}
	}
	return true
}

// StartReal starts a real node, or skips (fails when RequireEnv=1) if the
// package is not installed. The node is stopped when the test ends.
func StartReal(t testing.TB, cfg RealConfig) *RealNode {
	t.Helper()
	py := Python()
	if py == "" {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("real EasyTier node required (%s=1) but no python with easytier-pyo3: set %s or run .ci/run", RequireEnv, PythonEnv)
		}
		t.Skipf("no real EasyTier node: create .venv with easytier-pyo3 (see README) or set %s", PythonEnv)
	}
	if cfg.Port == 0 {
		cfg.Port = FreePortBlock(t)
	}
	n, err := StartRealProcess(py, cfg, &testLogWriter{t: t})
	if n != nil {
		t.Cleanup(n.Stop)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// StartRealProcess starts a real node with the given interpreter; its
// stderr goes to logw. Call Stop when done.
func StartRealProcess(py string, cfg RealConfig, logw io.Writer) (*RealNode, error) {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "etnode.py")
	if _, err := os.Stat(script); err != nil {
		script = filepath.Join("probe", "easytier", "easytiertest", "etnode.py")
	}
	cmd := exec.Command(py, script)
	cmd.Stderr = logw
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting real node: %w", err)
	}
	n := &RealNode{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout), Port: cfg.Port}
	n.out.Buffer(make([]byte, 1<<20), 16<<20)
	b, _ := json.Marshal(cfg)
	if _, err := fmt.Fprintf(stdin, "%s\n", b); err != nil {
		return n, err
	}
	line, err := n.readLine(30 * time.Second)
	if err != nil {
		return n, fmt.Errorf("real node did not start: %w", err)
	}
	if err := json.Unmarshal(line, n); err != nil {
		return n, fmt.Errorf("real node said %q: %w", line, err)
	}
	return n, nil
}

func (n *RealNode) readLine(timeout time.Duration) ([]byte, error) {
	ch := make(chan []byte, 1)
	go func() {
		if n.out.Scan() {
			ch <- append([]byte(nil), n.out.Bytes()...)
			return
		}
		close(ch)
	}()
	select {
	case b, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("node process ended: %v", n.out.Err())
		}
		return b, nil
	case <-time.After(timeout):
		return nil, fmt.Errorf("no answer within %v", timeout)
	}
}

// Query sends one harness command (peers, routes, summary, foreign, alive, heap)
// and decodes its JSON answer into v.
func (n *RealNode) Query(cmd string, v any) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := fmt.Fprintf(n.stdin, "%s\n", cmd); err != nil {
		return fmt.Errorf("sending %s: %w", cmd, err)
	}
	line, err := n.readLine(10 * time.Second)
	if err != nil {
		return fmt.Errorf("querying %s: %w", cmd, err)
	}
	return json.Unmarshal(line, v)
}

// Alive reports whether the node process is still running its node.
func (n *RealNode) Alive() bool {
	var st struct{ State string }
	return n.Query("alive", &st) == nil && st.State == "Running"
}

// PeerIDs lists the peer ids the node currently has connections with.
func (n *RealNode) PeerIDs() ([]uint32, error) {
	var peers []map[string]any
	if err := n.Query("peers", &peers); err != nil {
		return nil, err
	}
	var ids []uint32
	for _, p := range peers {
		if v, ok := p["peer_id"].(float64); ok {
			ids = append(ids, uint32(v))
		}
	}
	return ids, nil
}

// URL gives the listener URL for a scheme on this node.
func (n *RealNode) URL(scheme string) string {
	switch scheme {
	case "ws":
		return fmt.Sprintf("ws://127.0.0.1:%d/", n.Port+1)
	case "wss":
		return fmt.Sprintf("wss://127.0.0.1:%d/", n.Port+2)
	}
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, n.Port)
}

// Stop stops the node and reaps its process.
func (n *RealNode) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	fmt.Fprintf(n.stdin, "stop\n")
	n.stdin.Close()
	done := make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-done
	}
	n.cmd = nil
}

// testLogWriter forwards the node's stderr to the test log.
type testLogWriter struct{ t testing.TB }

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.t.Logf("node: %s", p)
	return len(p), nil
}

// Heap is the node process's live C heap (glibc mallinfo2, all arenas).
type Heap struct {
	InUse   int64 `json:"in_use"`  // bytes allocated and not freed, mmapped chunks included
	Arena   int64 `json:"arena"`   // bytes the arenas took from the system
	Mmapped int64 `json:"mmapped"` // bytes in chunks mmapped on their own
	Free    int64 `json:"free"`    // bytes freed but kept by the arenas
}

// Heap asks the node's process for its live heap. Unlike the resident
// size, it does not count memory the allocator keeps after a free, so it
// shows what state the node holds rather than how its arenas fragment.
func (n *RealNode) Heap() (Heap, error) {
	var h Heap
	if err := n.Query("heap", &h); err != nil {
		return h, err
	}
	if h.InUse <= 0 {
		return h, fmt.Errorf("node reported no heap: %+v", h)
	}
	return h, nil
}

// RSSKiB reads the node process's resident memory from /proc.
func (n *RealNode) RSSKiB() (int, error) {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0, fmt.Errorf("node not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kib int
			_, err := fmt.Sscanf(strings.TrimSpace(rest), "%d", &kib)
			return kib, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc status")
}
