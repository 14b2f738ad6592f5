package probe

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier"
)

// Target is one peer to probe, as the backend listed it.
type Target struct {
	ID            int64
	Name          string
	URL           string // scheme://host:port[/path]
	NetworkName   string
	NetworkSecret string `json:"-"`
}

// Result is one target's outcome.
type Result struct {
	Target   Target
	Class    Class
	Reason   string
	Err      error
	Duration time.Duration
	Obs      easytier.Observation
}

// Online reports whether the node counts as up: it accepted us and
// answered at least one ping.
func (r Result) Online() bool { return r.Class == ClassOK }

// Known reports whether the result says anything about the node. A probe
// the job budget cut short (canceled), our own bug (internal) or a target
// our address policy refused does not.
func (r Result) Known() bool {
	return r.Class != ClassCanceled && r.Class != ClassInternal && !errors.Is(r.Err, easytier.ErrTargetDenied)
}

// ProbeFunc probes one target; Runner.Probe defaults to the EasyTier prober.
type ProbeFunc func(ctx context.Context, t Target) (easytier.Observation, error)

// Runner probes many targets concurrently. The zero value works.
type Runner struct {
	Concurrency int           // default 1024
	Timeout     time.Duration // per probe; default 10s
	Probe       ProbeFunc     // default: easytier.Probe with Options
	Options     easytier.Options
	// OnResult, if set, is called as each result completes (from worker
	// goroutines, one at a time).
	OnResult func(Result)
}

// Run probes every target under ctx (the job deadline) and returns results
// in the order of targets. Targets not started or not finished before ctx
// ends are ClassCanceled.
func (r *Runner) Run(ctx context.Context, targets []Target) []Result {
	conc := r.Concurrency
	if conc <= 0 {
		conc = 1024
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	var probe probeInto
	if r.Probe == nil {
		opts := r.Options
		probe = func(ctx context.Context, t *Target, obs *easytier.Observation) error {
			o := opts
			o.NetworkName, o.NetworkSecret = t.NetworkName, t.NetworkSecret
			return easytier.ProbeInto(ctx, t.URL, &o, obs)
		}
	} else {
		probe = func(ctx context.Context, t *Target, obs *easytier.Observation) error {
			o, err := r.Probe(ctx, *t)
			*obs = o
			return err
		}
	}
	results := make([]Result, len(targets))
	// Room for every probe's socket at once, made while the first
	// probes dial.
	defer ReserveDescriptors(min(len(targets), conc))()
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var cbMu sync.Mutex
	for i := range targets {
		results[i] = Result{Target: targets[i], Class: ClassCanceled, Reason: "not_started", Err: context.Canceled}
		if ctx.Err() != nil { // select picks at random when both are ready
			continue
		}
		select {
		case <-ctx.Done():
			continue
		case sem <- struct{}{}:
		}
		wg.Add(1)
		go func(res *Result) {
			presizeStack()
			defer wg.Done()
			defer func() { <-sem }()
			runOne(ctx, res, timeout, probe)
			if r.OnResult != nil {
				r.deliver(res, &cbMu)
			}
		}(&results[i])
	}
	wg.Wait()
	return results
}

// probeInto probes t, writing what it saw into obs. Results and
// observations are passed by pointer on a probe's goroutine: its frames
// stay small, and so does its stack (easytier.ProbeInto).
type probeInto func(ctx context.Context, t *Target, obs *easytier.Observation) error

// deliver calls OnResult with a copy of res, one call at a time. It is a
// function of its own so that the copy's room is not in the frame of
// every probe's goroutine while it dials.
//
//go:noinline
func (r *Runner) deliver(res *Result, mu *sync.Mutex) {
	mu.Lock()
	defer mu.Unlock()
	r.OnResult(*res)
}

// runOne probes res.Target and fills in res.
func runOne(jobCtx context.Context, res *Result, timeout time.Duration, probe probeInto) {
	ctx, cancel := context.WithTimeout(jobCtx, timeout)
	defer cancel()
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			res.Err = fmt.Errorf("%w: %v\n%s", ErrPanic, p, debug.Stack())
			res.Class, res.Reason = ClassInternal, "panic"
		}
		res.Duration = time.Since(start)
	}()
	err := probe(ctx, &res.Target, &res.Obs)
	res.Err = err
	res.Class = Classify(err)
	res.Reason = res.Obs.Reason
	if res.Reason == "" {
		res.Reason = string(res.Class)
	}
	// A failure that coincides with the end of the job budget says nothing
	// about the node: the probe was cut short. The deadline is compared by
	// time, since a conn deadline can fire a moment before ctx notices.
	jobOver := jobCtx.Err() != nil
	if dl, ok := jobCtx.Deadline(); ok && !time.Now().Before(dl) {
		jobOver = true
	}
	if err != nil && jobOver && res.Class != ClassInternal &&
		(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || res.Class == ClassTimeout) {
		res.Class, res.Reason = ClassCanceled, "job_deadline"
	}
}
