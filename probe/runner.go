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
	probe := r.Probe
	if probe == nil {
		opts := r.Options
		probe = func(ctx context.Context, t Target) (easytier.Observation, error) {
			o := opts
			o.NetworkName, o.NetworkSecret = t.NetworkName, t.NetworkSecret
			return easytier.Probe(ctx, t.URL, o)
		}
	}
	results := make([]Result, len(targets))
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
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = runOne(ctx, targets[i], timeout, probe)
			if r.OnResult != nil {
				cbMu.Lock()
				r.OnResult(results[i])
				cbMu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	return results
}

func runOne(jobCtx context.Context, t Target, timeout time.Duration, probe ProbeFunc) (res Result) {
	ctx, cancel := context.WithTimeout(jobCtx, timeout)
	defer cancel()
	start := time.Now()
	res.Target = t
	defer func() {
		if p := recover(); p != nil {
			res.Err = fmt.Errorf("%w: %v\n%s", ErrPanic, p, debug.Stack())
			res.Class, res.Reason = ClassInternal, "panic"
		}
		res.Duration = time.Since(start)
	}()
	obs, err := probe(ctx, t)
	res.Obs, res.Err = obs, err
	res.Class = Classify(err)
	res.Reason = obs.Reason
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
	return res
}
