package main

import (
	"encoding/json"
	"io"
	"os"
	"runtime"
	"time"
)

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
		b, _ := json.Marshal(map[string]int{"peak_goroutines": peakG, "peak_fds": peakF})
		w.Write(append(b, '\n'))
	}
}
