package main

import (
	"encoding/json"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// vmHWM is this process's peak resident set, from /proc (a parent's
// getrusage of a child also counts the parent's memory before exec).
func vmHWM() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.Fields(rest)[0])
			return n
		}
	}
	return 0
}

// startPeaks samples goroutines and open descriptors every 10 ms when
// NEO_DEBUG_PEAKS=1 (used by bench/scale); stop prints the peaks as one
// JSON line on w.
func startPeaks(getenv func(string) string, w io.Writer) (stop func()) {
	if getenv("NEO_DEBUG_PEAKS") != "1" {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	var peakG, peakF int
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			peakG = max(peakG, runtime.NumGoroutine())
			if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
				peakF = max(peakF, len(ents))
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		b, _ := json.Marshal(map[string]int{"peak_goroutines": peakG, "peak_fds": peakF, "peak_rss_kib": vmHWM()})
		w.Write(append(b, '\n'))
	}
}
