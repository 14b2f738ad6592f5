package main

import (
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/Shopify/toxiproxy/v2/toxics"
)

// Go's timers wake up to about a millisecond late on this VM (the
// netpoller sleeps in whole milliseconds), which toxiproxy's own latency
// toxic and a time.AfterFunc relay add to every delayed chunk: 0.3–0.9 ms
// over the nominal delay in earlier runs. The injectors here sleep until
// spinMargin before the due time and spin for the rest, so the link's
// delay is the nominal one to within microseconds.
const spinMargin = 2 * time.Millisecond

// waitUntil returns at due, give or take a few microseconds.
func waitUntil(due time.Time) {
	if d := time.Until(due) - spinMargin; d > 0 {
		time.Sleep(d)
	}
	for time.Now().Before(due) {
		runtime.Gosched()
	}
}

// oneWay is a one-way delay of d ± jitter (uniform).
func oneWay(d, jitter time.Duration) time.Duration {
	if jitter > 0 {
		d += time.Duration(rand.Int64N(int64(2*jitter))) - jitter
	}
	return max(d, 0)
}

// preciseLatency is a toxiproxy toxic like "latency" (each chunk leaves
// its due time after it was read), in microseconds and without the
// timer's lateness.
type preciseLatency struct {
	LatencyUS int64 `json:"latency_us"`
	JitterUS  int64 `json:"jitter_us"`
}

func (t *preciseLatency) GetBufferSize() int { return 1024 }

func (t *preciseLatency) Pipe(stub *toxics.ToxicStub) {
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			due := c.Timestamp.Add(oneWay(time.Duration(t.LatencyUS)*time.Microsecond, time.Duration(t.JitterUS)*time.Microsecond))
			waitUntil(due)
			c.Timestamp = due
			stub.Output <- c
		}
	}
}

func init() { toxics.Register("precise_latency", new(preciseLatency)) }
