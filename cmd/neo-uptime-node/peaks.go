package main

import (
	"encoding/json"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// startPeaks samples goroutines every 10 ms and open descriptors (see
// below) when NEO_DEBUG_PEAKS=1 (used by bench/scale); stop prints the
// peaks as one JSON line on w.
//
// NEO_DEBUG_CPUPROFILE=path also writes a CPU profile of the run there
// (how bench/scale's overhead was profiled: go tool pprof bin/… path).
func startPeaks(getenv func(string) string, w io.Writer) (stop func()) {
	stopProfile := func() {}
	if path := getenv("NEO_DEBUG_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
		}
	}
	if getenv("NEO_DEBUG_PEAKS") != "1" {
		return stopProfile
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	var peakG, peakF int
	dirBuf := make([]byte, 64<<10)
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for tick := 0; ; tick++ {
			// Walking /proc/self/fd costs the kernel a dentry per open
			// descriptor (~5 % of a 1,000-peer run's CPU at every tick):
			// walk it every 50 ms, and whenever goroutines, which rise
			// and fall with the open probes, reach a new peak.
			g := runtime.NumGoroutine()
			if g > peakG || tick%5 == 0 {
				if n := countFDs(dirBuf); n > 0 {
					peakF = max(peakF, n)
				}
			}
			peakG = max(peakG, g)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		stopProfile()
		close(done)
		<-finished
		b, _ := json.Marshal(map[string]int{"peak_goroutines": peakG, "peak_fds": peakF, "peak_rss_kib": vmHWM()})
		w.Write(append(b, '\n'))
	}
}
