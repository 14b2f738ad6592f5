// Command reference compares neo-uptime-node with the original's approach
// — one EasyTier instance per monitored node, here easytier-pyo3 Nodes in
// one process (reference.py) — on the same real EasyTier targets, for
// N = 10, 50 and 100 monitored entries. It prints a Markdown table with the
// time to a healthy verdict for every target and the peak memory of each
// approach, and their ratios.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/neouptime/neo-uptime-node/bench/internal/stats"
	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
)

func main() {
	bin := flag.String("bin", "bin/neo-uptime-node", "binary under test")
	runs := flag.Int("runs", 3, "runs per figure")
	sizes := flag.String("sizes", "10,50,100", "monitored entries")
	flag.Parse()
	py := easytiertest.Python()
	if py == "" {
		fmt.Fprintln(os.Stderr, "reference: needs the easytier-pyo3 venv (make deps)")
		os.Exit(1)
	}
	// Five real target nodes, each in its own network.
	type target struct{ url, network, secret, host string }
	var targets []target
	for i := 0; i < 5; i++ {
		port, err := easytiertest.FreePort()
		if err != nil {
			panic(err)
		}
		cfg := easytiertest.RealConfig{Port: port, NetworkName: fmt.Sprintf("ref-net-%d", i), NetworkSecret: "ref", Hostname: fmt.Sprintf("ref-target-%d", i)}
		n, err := easytiertest.StartRealProcess(py, cfg, io.Discard)
		if err != nil {
			panic(err)
		}
		defer n.Stop()
		targets = append(targets, target{n.URL("tcp"), cfg.NetworkName, cfg.NetworkSecret, cfg.Hostname})
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "reference.py")

	fmt.Println("### Side by side with the reference approach (one EasyTier instance per monitored node)")
	fmt.Println()
	fmt.Println("Targets: 5 real EasyTier nodes on loopback, monitored N times in total. Reference = easytier-pyo3 Nodes in one process,")
	fmt.Println("healthy when a route to the target's hostname appears. Ours = one invocation of the binary (tcp, 4 pings, route sync).")
	fmt.Println()
	fmt.Println("'ours, verdict only' runs with -samples 1 -route-wait 0: healthy plus one RTT sample, the nearest match to the reference's")
	fmt.Println("verdict (a route, no RTT yet); 'ours, full' is the default run (4 pings 200 ms apart, route sync, up to 0.5 s after the node's info for a foreign-network table).")
	fmt.Println()
	fmt.Println("| N | reference: all healthy s | ours, verdict only: run s | time ratio | ours, full: run s | reference peak RSS MB | ours peak RSS MB | memory ratio |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, s := range strings.Split(*sizes, ",") {
		var n int
		fmt.Sscan(s, &n)
		var refT, refM, ourT, ourM, quickT []float64
		var entries []map[string]string
		var peers []map[string]any
		for i := 0; i < n; i++ {
			t := targets[i%len(targets)]
			entries = append(entries, map[string]string{"url": t.url, "network_name": t.network, "network_secret": t.secret, "hostname": t.host})
			host, port := splitHostPort(t.url)
			peers = append(peers, map[string]any{"id": i + 1, "host": host, "port": port, "protocol": "tcp", "network_name": t.network, "network_secret": t.secret})
		}
		in, _ := json.Marshal(map[string]any{"targets": entries, "timeout": 60})
		body, _ := json.Marshal(map[string]any{"code": 200, "data": map[string]any{"peers": peers}})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet {
				w.Write(body)
				return
			}
			io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, `{"code":200}`)
		}))
		for r := 0; r < *runs; r++ {
			cmd := exec.Command(py, script)
			cmd.Stdin = bytes.NewReader(in)
			var out bytes.Buffer
			cmd.Stdout = &out
			if err := cmd.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "reference:", err)
				continue
			}
			var res struct {
				Healthy int      `json:"healthy"`
				All     *float64 `json:"all_s"`
				RSS     float64  `json:"peak_rss_kib"`
			}
			json.Unmarshal(out.Bytes(), &res)
			if res.All != nil {
				refT = append(refT, *res.All)
			} else {
				fmt.Fprintf(os.Stderr, "reference: only %d of %d healthy within 60s\n", res.Healthy, n)
			}
			refM = append(refM, res.RSS/1024)

			dir, _ := os.MkdirTemp("", "neo-ref-")
			quick := exec.Command(*bin, "-log-level", "error", "-deadline", "20s", "-samples", "1", "-route-wait", "0")
			quick.Env = []string{"BACKEND_BASE_URL=" + srv.URL, "API_KEY=k", "DATABASE_PATH=" + filepath.Join(dir, "q.db")}
			qs := time.Now()
			if err := quick.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "ours (verdict only):", err)
			}
			quickT = append(quickT, time.Since(qs).Seconds())
			ours := exec.Command(*bin, "-log-level", "error", "-deadline", "20s")
			ours.Env = []string{"BACKEND_BASE_URL=" + srv.URL, "API_KEY=k", "DATABASE_PATH=" + filepath.Join(dir, "s.db"), "NEO_DEBUG_PEAKS=1"}
			var errb bytes.Buffer
			ours.Stderr = &errb
			start := time.Now()
			if err := ours.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "ours:", err)
			}
			ourT = append(ourT, time.Since(start).Seconds())
			// The binary's own VmHWM: a child's getrusage also counts this
			// process's memory from before exec.
			var pk struct {
				RSS int `json:"peak_rss_kib"`
			}
			if i := strings.LastIndex(errb.String(), `{"peak_`); i >= 0 {
				json.Unmarshal([]byte(strings.SplitN(errb.String()[i:], "\n", 2)[0]), &pk)
			}
			ourM = append(ourM, float64(pk.RSS)/1024)
			os.RemoveAll(dir)
		}
		srv.Close()
		fmt.Printf("| %d | %s | %s | %s | %s | %s | %s | %s |\n", n, stats.Spread(refT), stats.Spread(quickT), ratio(refT, quickT), stats.Spread(ourT), stats.Spread(refM), stats.Spread(ourM), ratio(refM, ourM))
	}
	fmt.Println()
}

func splitHostPort(u string) (string, int) {
	hp := strings.TrimPrefix(u, "tcp://")
	i := strings.LastIndex(hp, ":")
	var p int
	fmt.Sscan(hp[i+1:], &p)
	return hp[:i], p
}

func ratio(ref, ours []float64) string {
	if len(ref) == 0 || len(ours) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f×", stats.Median(ref)/stats.Median(ours))
}
