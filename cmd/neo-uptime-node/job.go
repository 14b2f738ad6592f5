package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
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

// Job is one invocation: fetch → probe → report → save.
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
	cfg := j.Cfg
	start := j.now()
	rep := &RunReport{StartedAt: start.UTC(), Owner: j.Owner, Phases: map[string]float64{}}
	end := start.Add(cfg.Deadline)
	if dl, ok := ctx.Deadline(); ok && dl.Before(end) {
		end = dl
	}
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()

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
	st, err := j.Store.Load(ctx)
	if err != nil {
		return rep, fmt.Errorf("loading state: %w", err)
	}

	t := j.now()
	peers, err := j.peers(ctx, st, rep)
	rep.Phases["fetch_ms"] = ms(j.now().Sub(t))
	if err != nil {
		return rep, err
	}

	t = j.now()
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
	targets, results := j.probe(jobCtx, peers, rep)
	jobCancel()
	rep.Phases["probe_ms"] = ms(j.now().Sub(t))

	statuses := j.decide(st, targets, results, rep)

	t = j.now()
	rctx, rcancel := context.WithDeadline(ctx, end.Add(-saveReserve(cfg.ReportReserve)))
	delivered := j.deliver(rctx, st, statuses, rep)
	rcancel()
	rep.Phases["report_ms"] = ms(j.now().Sub(t))

	t = j.now()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer scancel()
	if err := j.Store.Save(sctx, j.Owner, st); err != nil {
		return rep, fmt.Errorf("saving state: %w", err)
	}
	rep.Phases["save_ms"] = ms(j.now().Sub(t))
	rep.FinishedAt = j.now().UTC()
	if len(statuses) > 0 && delivered == 0 && rep.Undelivered > 0 {
		return rep, fmt.Errorf("delivering reports: none of %d delivered (kept for the next run)", rep.Undelivered)
	}
	return rep, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// peers returns the list to probe: the cache while it is younger than the
// fetch interval, else the backend's, else a cache not older than the max age.
func (j *Job) peers(ctx context.Context, st *state.State, rep *RunReport) ([]report.Peer, error) {
	cfg := j.Cfg
	age := j.now().Sub(st.Peers.FetchedAt)
	if cfg.PeerFetchInterval > 0 && len(st.Peers.Peers) > 0 && age < cfg.PeerFetchInterval {
		rep.PeerSource = "cache"
		return j.fromCache(st, rep), nil
	}
	// A failing backend gets a fifth of the run, so that the cached list
	// still leaves time to probe and report.
	fctx, fcancel := context.WithTimeout(ctx, max(cfg.Deadline/5, 2*time.Second))
	defer fcancel()
	peers, warns, err := j.Backend.ListTargets(fctx, cfg.Region)
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

// probe runs every supported peer through the runner; unsupported peers
// get a result without being probed.
func (j *Job) probe(ctx context.Context, peers []report.Peer, rep *RunReport) ([]report.Peer, []probe.Result) {
	var targets []probe.Target
	var probed []report.Peer
	for _, p := range peers {
		if p.Unsupported {
			rep.Peers = append(rep.Peers, PeerResult{ID: p.ID, Name: p.Name, Target: p.URL(),
				Class: string(probe.ClassProtocol), Reason: "unsupported_protocol", Decision: "unsupported"})
			j.Log.Warn("unsupported protocol, not probed", keyPeer, p.ID, "protocol", p.Protocol)
			continue
		}
		probed = append(probed, p)
		targets = append(targets, probe.Target{ID: p.ID, Name: p.Name, URL: p.URL(), NetworkName: p.NetworkName, NetworkSecret: p.NetworkSecret})
	}
	var done int
	var mu sync.Mutex
	total := len(targets)
	r := *j.Runner
	r.OnResult = func(res probe.Result) {
		mu.Lock()
		done++
		n := done
		mu.Unlock()
		lg := j.Log.With(keyPeer, res.Target.ID, keyTarget, res.Target.URL)
		if res.Class == probe.ClassOK {
			lg.Debug("probe", keyClass, res.Class, keyRTT, float64(res.Obs.LatencyUS())/1000, "done", n, "of", total)
		} else {
			lg.Debug("probe", keyClass, res.Class, keyReason, res.Reason, keyErr, res.Err, "done", n, "of", total)
		}
	}
	return probed, r.Run(ctx, targets)
}

// decide updates each peer's history and returns the statuses to report.
func (j *Job) decide(st *state.State, peers []report.Peer, results []probe.Result, rep *RunReport) []report.Status {
	cfg := j.Cfg
	now := j.now().UTC()
	var out []report.Status
	for i, res := range results {
		pr := newPeerResult(peers[i], res)
		if !res.Known() {
			pr.Decision = "unknown"
			if res.Class == probe.ClassInternal {
				j.Log.Error("probe failed internally", keyPeer, res.Target.ID, keyErr, res.Err)
			}
			rep.Peers = append(rep.Peers, pr)
			continue
		}
		h := st.History[res.Target.ID]
		h.LastClass, h.LastProbedAt = string(res.Class), now
		var s report.Status
		if res.Online() {
			h.ConsecOK, h.ConsecFail = h.ConsecOK+1, 0
			h.LastRTTUS = res.Obs.LatencyUS()
			s = report.Status{ID: res.Target.ID, Status: "online", ResponseTime: report.ResponseTimeMS(h.LastRTTUS)}
			if n := res.Obs.Node; n != nil {
				h.LastVersion = n.Version
				if n.ForeignKnown {
					s.PeerCount = n.ForeignNetworks
				}
			}
			h.LastPeerCount = s.PeerCount
			if h.Reported == "offline" && h.ConsecOK < cfg.UpAfter {
				pr.Decision = fmt.Sprintf("held (online %d/%d)", h.ConsecOK, cfg.UpAfter)
				st.History[res.Target.ID] = h
				rep.Peers = append(rep.Peers, pr)
				continue
			}
		} else {
			h.ConsecFail, h.ConsecOK = h.ConsecFail+1, 0
			s = report.Status{ID: res.Target.ID, Status: "offline"}
			if h.Reported != "offline" && h.ConsecFail < cfg.DownAfter {
				pr.Decision = fmt.Sprintf("held (failed %d/%d)", h.ConsecFail, cfg.DownAfter)
				st.History[res.Target.ID] = h
				rep.Peers = append(rep.Peers, pr)
				continue
			}
		}
		if h.Reported != s.Status {
			h.Reported, h.ChangedAt = s.Status, now
		}
		st.History[res.Target.ID] = h
		pr.Decision = "report"
		sc := s
		pr.Reported = &sc
		rep.Peers = append(rep.Peers, pr)
		out = append(out, s)
	}
	sort.Slice(rep.Peers, func(a, b int) bool { return rep.Peers[a].ID < rep.Peers[b].ID })
	return out
}

// deliver sends pending reports (unless replaced by a fresher one) and this
// run's, with bounded concurrency. What cannot be delivered stays pending.
func (j *Job) deliver(ctx context.Context, st *state.State, fresh []report.Status, rep *RunReport) int {
	now := j.now().UTC()
	type item struct {
		s       report.Status
		at      time.Time
		pending bool
	}
	var items []item
	freshIDs := map[int64]bool{}
	for _, s := range fresh {
		freshIDs[s.ID] = true
	}
	for id, p := range st.Pending {
		if freshIDs[id] {
			rep.PendingReplaced++
			continue
		}
		if now.Sub(p.MeasuredAt) > pendingMaxAge {
			rep.PendingExpired++
			j.Log.Error("dropping an undelivered report older than "+pendingMaxAge.String(), keyPeer, id, "status", p.Status, "measured_at", p.MeasuredAt)
			continue
		}
		items = append(items, item{report.Status{ID: p.ID, Status: p.Status, ResponseTime: p.ResponseTime, PeerCount: p.PeerCount}, p.MeasuredAt, true})
	}
	sort.Slice(items, func(a, b int) bool { return items[a].s.ID < items[b].s.ID })
	for _, s := range fresh {
		items = append(items, item{s, now, false})
	}
	next := map[int64]state.Pending{}
	errs := make([]error, len(items))
	sem := make(chan struct{}, j.Cfg.ReportConns)
	var wg sync.WaitGroup
	for i := range items {
		if ctx.Err() != nil {
			errs[i] = ctx.Err()
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = j.Backend.Submit(ctx, items[i].s)
		}(i)
	}
	wg.Wait()
	delivered := 0
	for i, it := range items {
		err := errs[i]
		var he *report.HTTPError
		if err == nil {
			delivered++
			if it.pending {
				rep.PendingDelivered++
			}
			continue
		}
		// Kept either way: a refusal may be the backend's passing fault
		// (code 500 in a 2xx envelope), and a fresher result replaces it.
		rep.Undelivered++
		next[it.s.ID] = state.Pending{ID: it.s.ID, Status: it.s.Status, ResponseTime: it.s.ResponseTime, PeerCount: it.s.PeerCount, MeasuredAt: it.at}
		if errors.As(err, &he) && !he.Retryable() && he.Status != 401 && he.Status != 403 {
			rep.Rejected++
			j.Log.Error("backend rejected report, kept for the next run", keyPeer, it.s.ID, "status", it.s.Status, keyErrCls, report.ErrorClass(err), keyErr, err)
		} else {
			j.Log.Warn("report not delivered, kept for the next run", keyPeer, it.s.ID, keyErrCls, report.ErrorClass(err), keyErr, err)
		}
	}
	for i := range rep.Peers {
		if r := rep.Peers[i].Reported; r != nil {
			_, failed := next[r.ID]
			rep.Peers[i].Delivered = !failed
		}
	}
	st.Pending = next
	rep.Reported = delivered
	return delivered
}
