package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/neouptime/neo-uptime-node/probe"
	"github.com/neouptime/neo-uptime-node/report"
	"github.com/neouptime/neo-uptime-node/state"
)

// backend is what the job needs from the NeoUptime backend.
type backend interface {
	ListTargets(ctx context.Context, region string) ([]report.Peer, []string, error)
	Submit(ctx context.Context, s report.Status) error
}

// store is what the job needs from a state store.
type store interface {
	Acquire(ctx context.Context, owner string, ttl time.Duration) error
	Release(ctx context.Context, owner string) error
	Load(ctx context.Context) (*state.State, error)
	Save(ctx context.Context, owner string, st *state.State) error
}

var (
	_ store   = (*state.FileStore)(nil)
	_ backend = (*report.Client)(nil)
)

// Log keys.
const (
	keyTarget = "target"
	keyPeer   = "peer_id"
	keyClass  = "class"
	keyReason = "reason"
	keyRTT    = "rtt_ms"
	keyErr    = "err"
	keyErrCls = "err_class"
)

// pendingMaxAge bounds how long an undelivered report is retried: a report
// for a peer still monitored is replaced by each fresher result well
// before; one older than this belongs to a peer the backend dropped.
const pendingMaxAge = time.Hour

// saveReserve is the part of -report-reserve kept at the very end of a run
// for writing state: a quarter of it, at most a second.
func saveReserve(reportReserve time.Duration) time.Duration {
	return min(time.Second, reportReserve/4)
}

// Job is one invocation: fetch → probe, reporting each result as it
// comes → save.
type Job struct {
	Cfg     *Config
	Backend backend
	Store   store
	Runner  *probe.Runner
	Log     *slog.Logger
	Owner   string
	Sealer  *state.Sealer
	Now     func() time.Time
	// Stop, when closed, ends the probe phase early (loop mode's SIGTERM):
	// unfinished probes count as unknown, and the report pass and the state
	// save still run within -report-reserve.
	Stop <-chan struct{}
	// GC, if set, is armed as each run starts (gcfloor.go).
	GC *gcFloor
}

// ErrNoPeers means neither the backend nor the cache gave a peer list.
var ErrNoPeers = errors.New("no peer list: backend unreachable and no usable cache")

func (j *Job) now() time.Time {
	if j.Now != nil {
		return j.Now()
	}
	return time.Now()
}

// Run performs one invocation under ctx (whose deadline, if any, is the
// scheduler's). It returns the run report; an error means the job failed.
func (j *Job) Run(ctx context.Context) (*RunReport, error) {
	j.GC.arm()
	cfg := j.Cfg
	start := j.now()
	rep := &RunReport{StartedAt: start.UTC(), Owner: j.Owner, Phases: map[string]float64{}}
	end := start.Add(cfg.Deadline)
	if dl, ok := ctx.Deadline(); ok && dl.Before(end) {
		end = dl
	}
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()

	// When every run fetches (no -peer-fetch-interval), the peer list is
	// asked for while the lease is taken: a read, harmless should another
	// run hold the lease, and the lease's time (a round trip with the
	// DynamoDB store) is then off the run's path whenever the backend
	// answers slower than the state is read.
	var early *peerFetch
	if cfg.PeerFetchInterval == 0 {
		early = j.startFetch(ctx)
		defer early.abandon()
	}
	if err := j.Store.Acquire(ctx, j.Owner, cfg.leaseTTL()); err != nil {
		var held *state.LeaseHeldError
		if errors.As(err, &held) {
			rep.Skipped, rep.LeaseOwner, rep.LeaseUntil = true, held.Owner, held.Until
			return rep, nil
		}
		return rep, fmt.Errorf("acquiring run lease: %w", err)
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer rcancel()
		if err := j.Store.Release(rctx, j.Owner); err != nil {
			j.Log.Warn("releasing run lease", keyErr, err)
		}
	}()
	t := j.now()
	st, peers, err := j.loadAndFetch(ctx, rep, early)
	rep.Phases["fetch_ms"] = ms(j.now().Sub(t))
	if err != nil {
		return rep, err
	}

	t = j.now()
	// Reports go out as results come in: the report pass runs beside the
	// probes, under its own deadline, and is waited for after them.
	rctx, rcancel := context.WithDeadline(ctx, end.Add(-saveReserve(cfg.ReportReserve)))
	defer rcancel()
	pass := j.startReports(rctx, st, peers, rep)
	jobCtx, jobCancel := context.WithDeadline(ctx, end.Add(-cfg.ReportReserve))
	if j.Stop != nil {
		go func() {
			select {
			case <-j.Stop:
				jobCancel()
			case <-jobCtx.Done():
			}
		}()
	}
	results := j.probe(jobCtx, peers, rep, pass.result)
	jobCancel()
	rep.Phases["probe_ms"] = ms(j.now().Sub(t))

	t = j.now()
	fresh, delivered := pass.finish(results)
	rcancel()
	rep.Phases["report_ms"] = ms(j.now().Sub(t))
	j.warnRedirected(rep)

	t = j.now()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer scancel()
	if err := j.Store.Save(sctx, j.Owner, st); err != nil {
		return rep, fmt.Errorf("saving state: %w", err)
	}
	rep.Phases["save_ms"] = ms(j.now().Sub(t))
	rep.FinishedAt = j.now().UTC()
	if fresh > 0 && delivered == 0 && rep.Undelivered > 0 {
		return rep, fmt.Errorf("delivering reports: none of %d delivered (kept for the next run)", rep.Undelivered)
	}
	return rep, nil
}

// closeIdle closes the backend client's kept connections between runs
// too far apart to reuse them (loop mode) and after each Lambda
// invocation (EventBridge schedules are a minute apart at least).
func (j *Job) closeIdle() {
	if c, ok := j.Backend.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// warnRedirected says so when the backend redirected this run's requests
// (followed on its own host): each then costs two round trips.
func (j *Job) warnRedirected(rep *RunReport) {
	r, ok := j.Backend.(interface{ Redirected() string })
	if !ok {
		return
	}
	if to := r.Redirected(); to != "" {
		j.Log.Warn("the backend redirects requests: set BACKEND_BASE_URL to where it now serves", "to", to)
		rep.Warnings = append(rep.Warnings, "the backend redirects requests to "+to+": set BACKEND_BASE_URL to where it now serves")
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// loadAndFetch loads the state and returns it with the peers to probe: the
// cache while it is younger than the fetch interval, else the backend's,
// else a cache not older than the max age. When every run fetches (a fetch
// interval of 0, the default) the state is read while the list is fetched:
// early is that fetch, which Run started while it took the lease (nil
// only with a fetch interval).
func (j *Job) loadAndFetch(ctx context.Context, rep *RunReport, early *peerFetch) (*state.State, []report.Peer, error) {
	if j.Cfg.PeerFetchInterval > 0 {
		st, err := j.Store.Load(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("loading state: %w", err)
		}
		if age := j.now().Sub(st.Peers.FetchedAt); len(st.Peers.Peers) > 0 && age < j.Cfg.PeerFetchInterval {
			rep.PeerSource = "cache"
			return st, j.fromCache(st, rep), nil
		}
		peers, warns, err := j.fetch(ctx)
		peers, err = j.usePeerList(st, rep, peers, warns, err)
		return st, peers, err
	}
	var st *state.State
	loaded := make(chan error, 1)
	go func() {
		var err error
		st, err = j.Store.Load(ctx)
		loaded <- err
	}()
	peers, warns, ferr := early.wait()
	if err := <-loaded; err != nil {
		return nil, nil, fmt.Errorf("loading state: %w", err)
	}
	peers, err := j.usePeerList(st, rep, peers, warns, ferr)
	return st, peers, err
}

// peerFetch is a fetch of the peer list under way (startFetch).
type peerFetch struct {
	cancel context.CancelFunc
	done   chan struct{}
	peers  []report.Peer
	warns  []string
	err    error
}

// startFetch starts fetching the peer list on a goroutine of its own.
func (j *Job) startFetch(ctx context.Context) *peerFetch {
	ctx, cancel := context.WithCancel(ctx)
	f := &peerFetch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.peers, f.warns, f.err = j.fetch(ctx)
	}()
	return f
}

// wait returns the fetch's outcome.
func (f *peerFetch) wait() ([]report.Peer, []string, error) {
	<-f.done
	return f.peers, f.warns, f.err
}

// abandon ends the fetch if it is still going (a lease another run holds)
// and waits for it: no request outlives the run.
func (f *peerFetch) abandon() {
	f.cancel()
	<-f.done
}

// fetch asks the backend for the peer list. A failing backend gets a fifth
// of the run, so that the cached list still leaves time to probe and report.
func (j *Job) fetch(ctx context.Context) ([]report.Peer, []string, error) {
	fctx, fcancel := context.WithTimeout(ctx, max(j.Cfg.Deadline/5, 2*time.Second))
	defer fcancel()
	return j.Backend.ListTargets(fctx, j.Cfg.Region)
}

// usePeerList returns the backend's list, recording it in the cache, or when the
// fetch failed the cache if not older than the max age.
func (j *Job) usePeerList(st *state.State, rep *RunReport, peers []report.Peer, warns []string, err error) ([]report.Peer, error) {
	cfg := j.Cfg
	age := j.now().Sub(st.Peers.FetchedAt)
	for _, w := range warns {
		j.Log.Warn("peer list", "warning", w)
		rep.Warnings = append(rep.Warnings, w)
	}
	if err == nil {
		rep.PeerSource = "backend"
		st.Peers = state.PeerCache{FetchedAt: j.now().UTC(), Peers: j.toCache(peers)}
		return peers, nil
	}
	if len(st.Peers.Peers) > 0 && age < cfg.PeerCacheMaxAge {
		j.Log.Warn("backend unreachable, using cached peer list", "age", age.Round(time.Second).String(), keyErrCls, report.ErrorClass(err), keyErr, err)
		rep.PeerSource = "cache"
		rep.Warnings = append(rep.Warnings, "peer list from cache: "+err.Error())
		return j.fromCache(st, rep), nil
	}
	j.Log.Error("fetching peers", keyErrCls, report.ErrorClass(err), keyErr, err)
	return nil, fmt.Errorf("%w: %w", ErrNoPeers, err)
}

func (j *Job) toCache(peers []report.Peer) []state.CachedPeer {
	out := make([]state.CachedPeer, len(peers))
	for i, p := range peers {
		out[i] = state.CachedPeer{ID: p.ID, Name: p.Name, Host: p.Host, Port: p.Port, Protocol: p.Protocol,
			NetworkName: p.NetworkName, SealedSecret: j.Sealer.Seal(p.NetworkSecret), Unsupported: p.Unsupported}
	}
	return out
}

func (j *Job) fromCache(st *state.State, rep *RunReport) []report.Peer {
	var out []report.Peer
	for _, c := range st.Peers.Peers {
		secret, err := j.Sealer.Open(c.SealedSecret)
		if err != nil {
			w := fmt.Sprintf("peer %d skipped: %v", c.ID, err)
			rep.Warnings = append(rep.Warnings, w)
			j.Log.Warn("cached peer", keyPeer, c.ID, keyErr, err)
			continue
		}
		out = append(out, report.Peer{ID: c.ID, Name: c.Name, Host: c.Host, Port: c.Port, Protocol: c.Protocol,
			NetworkName: c.NetworkName, NetworkSecret: secret, Unsupported: c.Unsupported})
	}
	return out
}

// probe runs every supported peer through the runner, handing each result
// to done as it completes; unsupported peers get a result without being
// probed. It returns every probed peer's result, done or not (a probe never
// started has no done call).
func (j *Job) probe(ctx context.Context, peers []report.Peer, rep *RunReport, done func(probe.Result)) []probe.Result {
	var targets []probe.Target
	for _, p := range peers {
		if p.Unsupported {
			rep.Peers = append(rep.Peers, PeerResult{ID: p.ID, Name: p.Name, Target: p.URL(),
				Class: string(probe.ClassProtocol), Reason: "unsupported_protocol", Decision: "unsupported"})
			j.Log.Warn("unsupported protocol, not probed", keyPeer, p.ID, "protocol", p.Protocol)
			continue
		}
		targets = append(targets, probe.Target{ID: p.ID, Name: p.Name, URL: p.URL(), NetworkName: p.NetworkName, NetworkSecret: p.NetworkSecret})
	}
	var n int
	total := len(targets)
	r := *j.Runner
	debug := j.Log.Enabled(ctx, slog.LevelDebug)
	r.OnResult = func(res probe.Result) { // called one at a time
		n++
		if !debug {
			done(res)
			return
		}
		// Only at debug level: With formats its attributes at once.
		lg := j.Log.With(keyPeer, res.Target.ID, keyTarget, res.Target.URL)
		if res.Class == probe.ClassOK {
			lg.Debug("probe", keyClass, res.Class, keyRTT, float64(res.Obs.LatencyUS())/1000, "done", n, "of", total)
		} else {
			lg.Debug("probe", keyClass, res.Class, keyReason, res.Reason, keyErr, res.Err, "done", n, "of", total)
		}
		done(res)
	}
	return r.Run(ctx, targets)
}
