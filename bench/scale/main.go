// Command scale measures neo-uptime-node at scale on loopback and prints
// Markdown tables:
//
//   - probes: the prober alone at concurrency 1, 100 and 1000 (probes/s,
//     peak heap, peak goroutines) against fake nodes;
//   - job: the built binary, one invocation against N = 100, 1000, 10000
//     peers (fake nodes answering with a fixed delay, spread over many
//     ports and 127.0.0.0/8 addresses): wall, CPU, peak RSS, peak
//     goroutines and descriptors. Each timed run finds the state the
//     previous one left, as a scheduled run does, and carries no sampler;
//     the peaks come from a second, untimed run with NEO_DEBUG_PEAKS.
//     The phases column splits the wall time as the binary's JSON report
//     does; NEO_DEBUG_CPUPROFILE=file makes each timed run write a CPU
//     profile there (the last run's remains), and -save-output keeps the
//     last timed run's report with every peer's connect/handshake/RTT
//     timings;
//   - floor: the job's traffic alone, 1,000 bare TCP exchanges with a
//     probe's messages, each followed by its HTTP PUT (floor.go), what the
//     machine allows before any EasyTier work (FLOOR_CPUPROFILE=file
//     makes its client write a CPU profile there, to hold against the
//     binary's);
//   - report: the report pass alone, 10000 reports to a loopback backend.
//
// Each figure is the median of -runs runs with its min–max spread.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/neouptime/neo-uptime-node/bench/internal/stats"
	"github.com/neouptime/neo-uptime-node/probe"
	"github.com/neouptime/neo-uptime-node/probe/easytier"
	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
	"github.com/neouptime/neo-uptime-node/report"
)

func main() {
	bin := flag.String("bin", "bin/neo-uptime-node", "binary under test")
	runs := flag.Int("runs", 3, "runs per figure (median reported)")
	delay := flag.Duration("delay", 20*time.Millisecond, "fake nodes' pong delay")
	only := flag.String("only", "probes,job,floor,report", "which tables")
	sizes := flag.String("sizes", "100,1000,10000", "peer counts for the job table")
	client := flag.String("floor-client", "", "internal: run the floor's client against these addresses")
	backend := flag.String("floor-backend", "", "internal: the floor client's backend URL")
	against := flag.String("against", "", "compare: run -bin and this binary in turn, -runs times each, 1,000 peers (no other table)")
	flag.StringVar(&saveOutput, "save-output", "", "write the last job run's JSON report to this file (per-peer timings)")
	flag.Parse()
	if *client != "" {
		floorClient(strings.Split(*client, ","), *backend, 1000)
		return
	}
	// The fake nodes' and backend's side: room for the largest run's
	// accepted connections now, so that no timed run waits while this
	// process's descriptor table grows (probe.ReserveDescriptors).
	probe.ReserveDescriptors(10000)()
	if *against != "" {
		compareTable(*bin, *against, *runs, *delay)
		return
	}
	for _, part := range strings.Split(*only, ",") {
		switch part {
		case "probes":
			probesTable(*runs)
		case "job":
			jobTable(*bin, *runs, *delay, *sizes)
		case "report":
			reportTable(*runs)
		case "floor":
			floorTable(*runs, *delay)
		}
	}
	againstFloor()
}

// vsFloor holds the 1,000-peer job's figures and the floor's, from this
// run, for the ratio table.
var vsFloor struct {
	jobOver, jobCPU, floorOver, floorCPU stat
}

// againstFloor prints the 1,000-peer job against the floor, as ratios of
// the medians measured in this run, when both tables ran.
func againstFloor() {
	v := vsFloor
	if len(v.jobOver) == 0 || len(v.floorOver) == 0 {
		return
	}
	ratio := func(a, b stat) string {
		return fmt.Sprintf("%.2f×", stats.Median(a)/stats.Median(b))
	}
	fmt.Println("### The 1,000-peer job against the floor (this run's medians)")
	fmt.Println()
	fmt.Println("| measure | job | floor | job ÷ floor |")
	fmt.Println("|---|---:|---:|---:|")
	fmt.Printf("| wall − slowest RTT ms | %s | %s | %s |\n", stats.Num(stats.Median(v.jobOver)), stats.Num(stats.Median(v.floorOver)), ratio(v.jobOver, v.floorOver))
	fmt.Printf("| CPU s (the binary; the floor's client) | %s | %s | %s |\n", stats.Num(stats.Median(v.jobCPU)), stats.Num(stats.Median(v.floorCPU)), ratio(v.jobCPU, v.floorCPU))
	fmt.Println()
}

var saveOutput string

// selfCPU is this process's CPU time so far, user and system.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// bounded calls f(0) … f(n-1), at most conc at a time, and waits for all.
func bounded(n, conc int, f func(i int)) {
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			f(i)
		}(i)
	}
	wg.Wait()
}

// stat is a series of runs, printed as its median with the spread.
type stat []float64

func (s stat) String() string { return stats.Spread(s) }

// fakes starts n fake nodes on 127.0.0.1 … 127.0.0.n.
func fakes(n int, delay time.Duration) []*easytiertest.Fake {
	var out []*easytiertest.Fake
	for i := 0; i < n; i++ {
		f, err := easytiertest.StartFake(&easytiertest.Fake{NetworkName: "bench", NetworkSecret: "b", Delay: delay,
			ListenIP: fmt.Sprintf("127.0.%d.%d", (i+1)/250, (i+1)%250+1), Foreign: []string{"x"}, Encrypt: "aes-gcm"})
		if err != nil {
			fmt.Fprintln(os.Stderr, "starting fake node:", err)
			os.Exit(1)
		}
		out = append(out, f)
	}
	return out
}

// peakSampler tracks peak heap and goroutines of this process.
func peakSampler() (stop func() (heapMB, goroutines float64)) {
	var peakHeap uint64
	var peakG int
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peakHeap = max(peakHeap, ms.HeapInuse)
			peakG = max(peakG, runtime.NumGoroutine())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() (float64, float64) {
		close(done)
		wg.Wait()
		return float64(peakHeap) / (1 << 20), float64(peakG)
	}
}

func probesTable(runs int) {
	nodes := fakes(8, 0)
	defer func() {
		for _, f := range nodes {
			f.Close()
		}
	}()
	fmt.Println("### Prober alone (tcp, 4 pings, route sync; fake nodes on loopback)")
	fmt.Println()
	fmt.Println("| concurrency | probes | probes/s | peak heap MB (prober + fake nodes) | peak goroutines |")
	fmt.Println("|---:|---:|---:|---:|---:|")
	for _, conc := range []int{1, 100, 1000} {
		n := max(200, 3*conc)
		var rate, heap, gor stat
		for r := 0; r < runs; r++ {
			targets := make([]probe.Target, n)
			for i := range targets {
				targets[i] = probe.Target{ID: int64(i), URL: nodes[i%len(nodes)].TCPURL(), NetworkName: "bench", NetworkSecret: "b"}
			}
			runtime.GC()
			stop := peakSampler()
			run := &probe.Runner{Concurrency: conc, Timeout: 20 * time.Second,
				Options: easytier.Options{Samples: 4, Interval: time.Millisecond}}
			start := time.Now()
			res := run.Run(context.Background(), targets)
			el := time.Since(start)
			h, g := stop()
			for _, x := range res {
				if x.Class != probe.ClassOK {
					fmt.Fprintf(os.Stderr, "probe failed: %s %v\n", x.Class, x.Err)
				}
			}
			rate, heap, gor = append(rate, float64(n)/el.Seconds()), append(heap, h), append(gor, g)
		}
		fmt.Printf("| %d | %d | %s | %s | %s |\n", conc, n, rate, heap, gor)
	}
	fmt.Println()
}

// jobBackend serves n peers spread over the fake nodes and counts reports.
type jobBackend struct {
	body []byte
	puts atomic.Int64
}

func (b *jobBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		w.Write(b.body)
		return
	}
	b.puts.Add(1)
	acceptReport(w, r)
}

// acceptReport answers a status report as the backend does.
func acceptReport(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	fmt.Fprint(w, `{"code":200,"message":"Success"}`)
}

// jobRun is what one invocation of the binary measured.
type jobRun struct {
	wall, cpu, otherCPU     time.Duration // otherCPU: this process's (fake nodes, backend)
	slowestUS               int64
	puts                    int64
	phases                  map[string]float64
	rssKiB, goroutines, fds int
}

// runJob runs the binary once against the backend at url, with its state
// in dir; with peaks it samples goroutines and descriptors
// (NEO_DEBUG_PEAKS) and reports VmHWM.
func runJob(bin, url, dir string, be *jobBackend, peaks bool) jobRun {
	be.puts.Store(0)
	cmd := exec.Command(bin, "-output", "json", "-samples", "1", "-deadline", "10s", "-report-reserve", "3s",
		"-report-concurrency", "64", "-log-level", "warn")
	cmd.Env = []string{"BACKEND_BASE_URL=" + url, "API_KEY=bench", "DATABASE_PATH=" + filepath.Join(dir, "s.db")}
	if peaks {
		cmd.Env = append(cmd.Env, "NEO_DEBUG_PEAKS=1")
	} else {
		cmd.Env = append(cmd.Env, "NEO_DEBUG_CPUPROFILE="+os.Getenv("NEO_DEBUG_CPUPROFILE"))
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cpu0 := selfCPU()
	start := time.Now()
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "run failed: %v\n%s\n", err, errb.String())
		if cmd.ProcessState == nil { // never started: nothing to measure
			os.Exit(1)
		}
	}
	r := jobRun{wall: time.Since(start), otherCPU: selfCPU() - cpu0, puts: be.puts.Load()}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	var rep struct {
		Phases map[string]float64 `json:"phases"`
		Peers  []struct {
			LatencyUS int64 `json:"latency_us"`
		}
	}
	json.Unmarshal(out.Bytes(), &rep)
	if saveOutput != "" && !peaks {
		_ = os.WriteFile(saveOutput, out.Bytes(), 0o644)
	}
	r.phases = rep.Phases
	for _, p := range rep.Peers {
		r.slowestUS = max(r.slowestUS, p.LatencyUS)
	}
	var pk struct {
		G   int `json:"peak_goroutines"`
		F   int `json:"peak_fds"`
		RSS int `json:"peak_rss_kib"`
	}
	if i := strings.LastIndex(errb.String(), `{"peak_`); i >= 0 {
		json.Unmarshal([]byte(strings.SplitN(errb.String()[i:], "\n", 2)[0]), &pk)
	}
	r.rssKiB, r.goroutines, r.fds = pk.RSS, pk.G, pk.F
	return r
}

// startJobBackend serves n peers spread over nodes.
func startJobBackend(nodes []*easytiertest.Fake, n int) (*jobBackend, *httptest.Server) {
	var peers []map[string]any
	for i := 0; i < n; i++ {
		h, p, _ := net.SplitHostPort(strings.TrimPrefix(nodes[i%len(nodes)].TCPURL(), "tcp://"))
		port, _ := strconv.Atoi(p)
		peers = append(peers, map[string]any{"id": i + 1, "host": h, "port": port, "protocol": "tcp", "network_name": "bench", "network_secret": "b"})
	}
	body, _ := json.Marshal(map[string]any{"code": 200, "data": map[string]any{"peers": peers}})
	be := &jobBackend{body: body}
	return be, httptest.NewServer(be)
}

// compareTable runs two binaries in turn against the same 1,000 peers,
// runs times each, and prints both with the ratio of their means: how
// each change of this project was measured, since this machine's speed
// moves a figure more from one hour to the next than most changes do,
// and only runs interleaved in the same minutes compare.
func compareTable(binA, binB string, runs int, delay time.Duration) {
	nodes := fakes(40, delay)
	defer func() {
		for _, f := range nodes {
			f.Close()
		}
	}()
	be, srv := startJobBackend(nodes, 1000)
	defer srv.Close()
	bins := []string{binA, binB}
	var over, cpu, reported [2]stat
	var dirs [2]string
	for i, bin := range bins {
		dirs[i], _ = os.MkdirTemp("", "neo-bench-")
		defer os.RemoveAll(dirs[i])
		runJob(bin, srv.URL, dirs[i], be, false) // leaves the state a scheduled run finds
	}
	for r := 0; r < runs; r++ {
		for i, bin := range bins {
			res := runJob(bin, srv.URL, dirs[i], be, false)
			over[i] = append(over[i], float64(res.wall.Microseconds()-res.slowestUS)/1000)
			cpu[i] = append(cpu[i], res.cpu.Seconds())
			reported[i] = append(reported[i], float64(res.puts))
		}
	}
	fmt.Printf("### Two binaries, interleaved (1000 peers, fake nodes answer pongs after %v, %d runs each)\n\n", delay, runs)
	fmt.Println("| binary | wall − slowest RTT ms | mean | CPU s | mean | reported |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for i, bin := range bins {
		fmt.Printf("| %s | %s | %s | %s | %.4f | %s |\n", bin, over[i], stats.Num(stats.Mean(over[i])), cpu[i], stats.Mean(cpu[i]), reported[i])
	}
	fmt.Printf("| second ÷ first | | %.2f× | | %.2f× | |\n\n", stats.Mean(over[1])/stats.Mean(over[0]), stats.Mean(cpu[1])/stats.Mean(cpu[0]))
}

func jobTable(bin string, runs int, delay time.Duration, sizes string) {
	nodes := fakes(40, delay)
	defer func() {
		for _, f := range nodes {
			f.Close()
		}
	}()
	fmt.Printf("### One invocation of the binary (default -concurrency 1024, 10 s deadline; fake nodes answer pongs after %v; 1 ping per probe with route sync; tcp; state left by the previous run, as on a schedule; peaks from a second run with the sampler on)\n\n", delay)
	fmt.Println("| peers | wall s | wall − slowest RTT ms | wall − delay ms | CPU s | fake nodes + backend CPU s | peak RSS MB | peak goroutines | peak fds | reported | fetch / probe / report / save ms |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, s := range strings.Split(sizes, ",") {
		n, _ := strconv.Atoi(s)
		be, srv := startJobBackend(nodes, n)
		var wall, over, overDelay, cpu, fakeCPU, rss, gor, fds, rep stat
		phases := map[string]stat{}
		// Every run but the first finds the state the previous one left
		// (history and peer cache of n peers), as a scheduled run does:
		// one untimed run creates it.
		dir, _ := os.MkdirTemp("", "neo-bench-")
		runJob(bin, srv.URL, dir, be, false)
		for r := 0; r < runs; r++ {
			// The timed run has no sampler in it (walking /proc/self/fd
			// cost ~3 % of the binary's CPU); a second, untimed run
			// samples goroutines and descriptors.
			res := runJob(bin, srv.URL, dir, be, false)
			pk := runJob(bin, srv.URL, dir, be, true)
			wall = append(wall, res.wall.Seconds())
			over = append(over, float64(res.wall.Microseconds()-res.slowestUS)/1000)
			overDelay = append(overDelay, float64((res.wall-delay).Microseconds())/1000)
			cpu = append(cpu, res.cpu.Seconds())
			fakeCPU = append(fakeCPU, res.otherCPU.Seconds())
			rss = append(rss, float64(pk.rssKiB)/1024)
			gor, fds = append(gor, float64(pk.goroutines)), append(fds, float64(pk.fds))
			rep = append(rep, float64(res.puts))
			for k, v := range res.phases {
				phases[k] = append(phases[k], v)
			}
		}
		srv.Close()
		os.RemoveAll(dir)
		if n == 1000 {
			vsFloor.jobOver, vsFloor.jobCPU = over, cpu
		}
		var ph []string
		for _, k := range []string{"fetch_ms", "probe_ms", "report_ms", "save_ms"} {
			ph = append(ph, fmt.Sprintf("%.0f", stats.Median(phases[k])))
		}
		fmt.Printf("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", n, wall, over, overDelay, cpu, fakeCPU, rss, gor, fds, rep, strings.Join(ph, " / "))
	}
	fmt.Println()
}

func reportTable(runs int) {
	var puts atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		puts.Add(1)
		acceptReport(w, r)
	}))
	defer srv.Close()
	fmt.Println("### Report pass alone (10000 PUTs to a loopback backend, 64 keep-alive connections)")
	fmt.Println()
	fmt.Println("| reports | seconds | reports/s | peak heap MB |")
	fmt.Println("|---:|---:|---:|---:|")
	const n = 10000
	var secs, rate, heap stat
	for r := 0; r < runs; r++ {
		c, _ := report.New(report.Options{BaseURL: srv.URL, APIKey: "k", Conns: 64})
		runtime.GC()
		stop := peakSampler()
		start := time.Now()
		bounded(n, 64, func(i int) {
			if err := c.Submit(context.Background(), report.Status{ID: int64(i), Status: "online", ResponseTime: 12}); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		})
		el := time.Since(start)
		h, _ := stop()
		secs, rate, heap = append(secs, el.Seconds()), append(rate, n/el.Seconds()), append(heap, h)
	}
	fmt.Printf("| %d | %s | %s | %s |\n\n", n, secs, rate, heap)
}
