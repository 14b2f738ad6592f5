// Command timeline shows where a run of the binary waits: what both cores
// did in each few milliseconds of a 1,000-peer run against bench/scale's
// fake nodes (the job, the fake nodes and backend, other tasks, or
// nothing), and where the job's threads slept in the kernel unable to be
// woken (state D), with the kernel path and the time.
//
// It records the scheduler's switch events with perf (perf record -a -g
// -e sched:sched_switch …; needs perf and root, or a perf_event_paranoid
// that allows system-wide recording) around one `bench/scale -only job`
// table, whose three runs of the binary it prints in turn: the untimed
// one that leaves the state, the timed one, and the one with the peaks
// sampler on. This is how the idle windows that the descriptor table's
// growth caused were found (BENCHMARKS.md, fifteenth session).
//
//	go run ./bench/timeline -bin bin/neo-uptime-node
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	bin := flag.String("bin", "bin/neo-uptime-node", "binary under test")
	peers := flag.Int("peers", 1000, "peers in the run")
	bucket := flag.Duration("bucket", 5*time.Millisecond, "width of a row of the timeline")
	flag.Parse()
	dir, err := os.MkdirTemp("", "neo-timeline-")
	check(err)
	defer os.RemoveAll(dir)
	scale := filepath.Join(dir, "scale")
	run("go", "build", "-o", scale, "./bench/scale")
	data := filepath.Join(dir, "perf.data")
	abs, err := filepath.Abs(*bin)
	check(err)
	run("perf", "record", "-q", "-a", "-g", "-o", data,
		"-e", "sched:sched_switch", "-e", "sched:sched_process_exec", "-e", "sched:sched_process_exit",
		"--", scale, "-bin", abs, "-only", "job", "-sizes", strconv.Itoa(*peers), "-runs", "1")
	out, err := exec.Command("perf", "script", "-i", data, "-F", "comm,pid,tid,cpu,time,event,trace,ip,sym").Output()
	check(err)
	report(parse(out), comm(abs), comm(scale), *bucket)
}

// comm is the name the kernel gives a process run from path.
func comm(path string) string {
	c := filepath.Base(path)
	if len(c) > 15 {
		c = c[:15]
	}
	return c
}

type event struct {
	t        float64 // seconds
	cpu      int
	pid      int
	name     string // sched:sched_switch, …
	fields   map[string]string
	stack    []string // kernel and user symbols, innermost first
	filename string   // exec's
}

var header = regexp.MustCompile(`^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$`)

func parse(out []byte) []event {
	var evs []event
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := header.FindStringSubmatch(line); m != nil {
			e := event{name: strings.TrimSuffix(m[6], ":"), fields: map[string]string{}}
			e.pid, _ = strconv.Atoi(m[2])
			e.cpu, _ = strconv.Atoi(m[4])
			e.t, _ = strconv.ParseFloat(m[5], 64)
			for _, kv := range strings.Fields(m[7]) {
				if k, v, ok := strings.Cut(kv, "="); ok {
					e.fields[k] = v
				}
			}
			evs = append(evs, e)
			continue
		}
		if f := strings.Fields(line); len(f) >= 2 && len(evs) > 0 {
			evs[len(evs)-1].stack = append(evs[len(evs)-1].stack, f[1])
		}
	}
	return evs
}

// The scheduler's own frames, skipped to name where a thread slept.
var schedFrames = regexp.MustCompile(`^(__schedule|schedule.*|io_schedule.*|wait_for_completion.*|__wait_for_common|.*_timeout|bit_wait.*|__wait_on_bit.*|out_of_line_wait_on_bit.*|rwsem_down.*|__mutex_lock.*|mutex_lock.*|__down.*)$`)

func report(evs []event, job, harness string, bucket time.Duration) {
	type span struct{ start, end float64 }
	var runs []span
	open := map[int]float64{}
	for _, e := range evs {
		switch e.name {
		case "sched:sched_process_exec":
			if comm(e.fields["filename"]) == job {
				open[e.pid] = e.t
			}
		case "sched:sched_process_exit":
			if st, ok := open[e.pid]; ok && e.fields["group_dead"] == "true" {
				runs = append(runs, span{st, e.t})
				delete(open, e.pid)
			}
		}
	}
	if len(runs) == 0 {
		fmt.Fprintln(os.Stderr, "timeline: no run of", job, "recorded")
		os.Exit(1)
	}
	kind := func(c string) string {
		switch {
		case strings.HasPrefix(c, "swapper"):
			return "idle"
		case c == job:
			return "job"
		case c == harness:
			return "fake nodes + backend"
		}
		return "other"
	}
	kinds := []string{"job", "fake nodes + backend", "idle", "other"}
	names := []string{"untimed (leaves the state)", "timed", "peaks sampler on"}
	w := bucket.Seconds()
	for i, r := range runs {
		name := ""
		if i < len(names) {
			name = ", " + names[i]
		}
		fmt.Printf("### Run %d%s: %.1f ms, exec to exit\n\n", i+1, name, (r.end-r.start)*1000)
		fmt.Printf("| ms | %s |\n|---:|%s\n", strings.Join(kinds, " % | ")+" %", strings.Repeat("---:|", len(kinds)))
		share := map[int]map[string]float64{}
		since := map[int]onCPU{}     // cpu → what has run on it since when
		asleep := map[string]sleep{} // tid → when a job thread went to sleep in D, and where
		slept := map[string][]float64{}
		for _, e := range evs {
			if e.name != "sched:sched_switch" {
				continue
			}
			if s, ok := since[e.cpu]; ok && e.t > r.start && s.t < r.end {
				for a, b := max(s.t, r.start), min(e.t, r.end); a < b; {
					k := int((a - r.start) / w)
					edge := r.start + float64(k+1)*w
					if edge <= a {
						edge = a + w/1e6
					}
					c := min(b, edge)
					if share[k] == nil {
						share[k] = map[string]float64{}
					}
					share[k][s.kind] += c - a
					a = c
				}
			}
			since[e.cpu] = onCPU{kind(e.fields["next_comm"]), e.t}
			if e.t < r.start || e.t > r.end {
				continue
			}
			if a, ok := asleep[e.fields["next_pid"]]; ok {
				slept[a.where] = append(slept[a.where], e.t-a.t)
				delete(asleep, e.fields["next_pid"])
			}
			if e.fields["prev_comm"] == job && strings.HasPrefix(e.fields["prev_state"], "D") {
				var path []string
				for _, f := range e.stack {
					if len(path) == 0 && schedFrames.MatchString(f) {
						continue
					}
					if len(path) == 4 || strings.HasPrefix(f, "entry_SYSCALL") || f == "[unknown]" {
						break
					}
					path = append(path, f)
				}
				asleep[e.fields["prev_pid"]] = sleep{e.t, strings.Join(path, " ← ")}
			}
		}
		rows := make([]int, 0, len(share))
		for k := range share {
			rows = append(rows, k)
		}
		sort.Ints(rows)
		for _, k := range rows {
			fmt.Printf("| %.0f |", float64(k)*w*1000)
			for _, kd := range kinds {
				fmt.Printf(" %.0f |", 100*share[k][kd]/(2*w))
			}
			fmt.Println()
		}
		fmt.Printf("\nThe job's threads asleep in the kernel unwakeable (D), by where (innermost first):\n\n| where | times | total ms | longest ms |\n|---|---:|---:|---:|\n")
		wheres := make([]string, 0, len(slept))
		for k := range slept {
			wheres = append(wheres, k)
		}
		total := func(ds []float64) (t, m float64) {
			for _, d := range ds {
				t, m = t+d, max(m, d)
			}
			return t * 1000, m * 1000
		}
		sort.Slice(wheres, func(a, b int) bool {
			ta, _ := total(slept[wheres[a]])
			tb, _ := total(slept[wheres[b]])
			return ta > tb
		})
		for _, k := range wheres {
			t, m := total(slept[k])
			fmt.Printf("| %s | %d | %.2f | %.2f |\n", k, len(slept[k]), t, m)
		}
		fmt.Println()
	}
}

type onCPU struct {
	kind string
	t    float64
}

type sleep struct {
	t     float64
	where string
}

func run(name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	check(cmd.Run())
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "timeline:", err)
		os.Exit(1)
	}
}
