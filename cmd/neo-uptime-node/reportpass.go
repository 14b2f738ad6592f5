package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/neouptime/neo-uptime-node/probe"
	"github.com/neouptime/neo-uptime-node/report"
	"github.com/neouptime/neo-uptime-node/state"
)

// reportPass delivers a run's reports while its probes still run: each
// result is decided (-down-after / -up-after) and, if it is to be reported,
// queued for the backend as soon as it completes, so a slow or dead node
// delays no one else's report. Reports an earlier run left undelivered go
// first; one whose peer is probed in this run waits for that peer's result,
// which replaces it if it is reported.
//
// Every report is sent at most once per run; what cannot be delivered
// before ctx ends is kept in st.Pending for the next run (finish).
type reportPass struct {
	j   *Job
	ctx context.Context
	st  *state.State // History and Pending, under mu until finish
	rep *RunReport   // Peers and the counters, under mu until finish

	mu      sync.Mutex
	peers   map[int64]report.Peer   // the probed peers by id
	waiting map[int64]state.Pending // earlier runs' reports waiting for this run's result
	decided map[int64]bool
	fresh   int // this run's reports queued
	sent    []sendResult

	queue chan sendItem // buffered for every report the run can make: never blocks
	wg    sync.WaitGroup
}

type sendItem struct {
	s       report.Status
	at      time.Time // when it was measured
	pending bool      // left by an earlier run
}

type sendResult struct {
	sendItem
	err error
}

// startReports starts the report pass: the backend workers, and earlier
// runs' reports for peers this run does not probe.
func (j *Job) startReports(ctx context.Context, st *state.State, peers []report.Peer, rep *RunReport) *reportPass {
	now := j.now().UTC()
	rp := &reportPass{j: j, ctx: ctx, st: st, rep: rep,
		peers: make(map[int64]report.Peer, len(peers)), waiting: map[int64]state.Pending{}, decided: make(map[int64]bool, len(peers))}
	// Every peer gets a result: size the report's list once.
	rep.Peers = slices.Grow(rep.Peers, len(peers))
	for _, p := range peers {
		if !p.Unsupported {
			rp.peers[p.ID] = p
		}
	}
	var first []state.Pending
	for id, p := range st.Pending {
		switch {
		case now.Sub(p.MeasuredAt) > pendingMaxAge:
			rep.PendingExpired++
			j.Log.Error("dropping an undelivered report older than "+pendingMaxAge.String(), keyPeer, id, "status", p.Status, "measured_at", p.MeasuredAt)
		case hasKey(rp.peers, id):
			rp.waiting[id] = p
		default:
			first = append(first, p)
		}
	}
	rp.queue = make(chan sendItem, len(first)+len(rp.waiting)+len(rp.peers))
	sort.Slice(first, func(a, b int) bool { return first[a].ID < first[b].ID })
	for _, p := range first {
		rp.queue <- pendingItem(p)
	}
	workers := min(j.Cfg.ReportConns, cap(rp.queue))
	rp.wg.Add(workers)
	for range workers {
		go rp.work()
	}
	return rp
}

func hasKey[K comparable, V any](m map[K]V, k K) bool { _, ok := m[k]; return ok }

func pendingItem(p state.Pending) sendItem {
	return sendItem{s: report.Status{ID: p.ID, Status: p.Status, ResponseTime: p.ResponseTime, PeerCount: p.PeerCount},
		at: p.MeasuredAt, pending: true}
}

// work sends queued reports until the queue is closed; once ctx has ended
// it only records what it could not send.
func (rp *reportPass) work() {
	defer rp.wg.Done()
	for it := range rp.queue {
		err := rp.ctx.Err()
		if err == nil {
			err = rp.j.Backend.Submit(rp.ctx, it.s)
		}
		rp.mu.Lock()
		rp.sent = append(rp.sent, sendResult{it, err})
		rp.mu.Unlock()
	}
}

// result decides one probe result and queues its report (the runner's
// OnResult: called one at a time, while other probes run).
func (rp *reportPass) result(res probe.Result) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.decide(res)
}

// decide updates the peer's history, records its line of the run report and
// queues what is to be reported. Called with mu held.
func (rp *reportPass) decide(res probe.Result) {
	id := res.Target.ID
	if rp.decided[id] {
		return
	}
	rp.decided[id] = true
	now := rp.j.now().UTC()
	pr := newPeerResult(rp.peers[id], res)
	s, ok := rp.status(res, &pr, now)
	if old, waited := rp.waiting[id]; waited {
		delete(rp.waiting, id)
		if ok {
			rp.rep.PendingReplaced++
		} else {
			rp.queue <- pendingItem(old)
		}
	}
	if ok {
		sc := s
		pr.Decision, pr.Reported = "report", &sc
		rp.fresh++
		rp.queue <- sendItem{s: s, at: now}
	}
	rp.rep.Peers = append(rp.rep.Peers, pr)
}

// status applies the history to one result: the status to report and
// true, or false with pr.Decision saying why not.
func (rp *reportPass) status(res probe.Result, pr *PeerResult, now time.Time) (report.Status, bool) {
	j, st, cfg := rp.j, rp.st, rp.j.Cfg
	id := res.Target.ID
	if !res.Known() {
		pr.Decision = "unknown"
		if res.Class == probe.ClassInternal {
			j.Log.Error("probe failed internally", keyPeer, id, keyErr, res.Err)
		}
		return report.Status{}, false
	}
	h := st.History[id]
	defer func() { st.History[id] = h }()
	h.LastClass, h.LastProbedAt = string(res.Class), now
	var s report.Status
	if res.Online() {
		h.ConsecOK, h.ConsecFail = h.ConsecOK+1, 0
		h.LastRTTUS = res.Obs.LatencyUS()
		s = report.Status{ID: id, Status: "online", ResponseTime: report.ResponseTimeMS(h.LastRTTUS)}
		if n := res.Obs.Node; n != nil {
			h.LastVersion = n.Version
			if n.ForeignKnown {
				s.PeerCount = n.ForeignNetworks
			}
		}
		h.LastPeerCount = s.PeerCount
		if h.Reported == "offline" && h.ConsecOK < cfg.UpAfter {
			pr.Decision = fmt.Sprintf("held (online %d/%d)", h.ConsecOK, cfg.UpAfter)
			return s, false
		}
	} else {
		h.ConsecFail, h.ConsecOK = h.ConsecFail+1, 0
		s = report.Status{ID: id, Status: "offline"}
		if h.Reported != "offline" && h.ConsecFail < cfg.DownAfter {
			pr.Decision = fmt.Sprintf("held (failed %d/%d)", h.ConsecFail, cfg.DownAfter)
			return s, false
		}
	}
	if h.Reported != s.Status {
		h.Reported, h.ChangedAt = s.Status, now
	}
	return s, true
}

// finish decides the results that had no OnResult (probes never started),
// releases the earlier reports still waiting, waits for the queue to drain
// and records in st.Pending what was not delivered. It returns how many of
// this run's reports were queued and how many reports were delivered.
func (rp *reportPass) finish(results []probe.Result) (fresh, delivered int) {
	rp.mu.Lock()
	for _, res := range results {
		rp.decide(res)
	}
	ids := make([]int64, 0, len(rp.waiting))
	for id := range rp.waiting {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	for _, id := range ids {
		rp.queue <- pendingItem(rp.waiting[id])
		delete(rp.waiting, id)
	}
	close(rp.queue)
	rp.mu.Unlock()
	rp.wg.Wait()

	j, rep := rp.j, rp.rep
	sort.Slice(rep.Peers, func(a, b int) bool { return rep.Peers[a].ID < rep.Peers[b].ID })
	sort.Slice(rp.sent, func(a, b int) bool { return rp.sent[a].s.ID < rp.sent[b].s.ID })
	next := map[int64]state.Pending{}
	for _, r := range rp.sent {
		var he *report.HTTPError
		if r.err == nil {
			delivered++
			if r.pending {
				rep.PendingDelivered++
			}
			continue
		}
		// Kept either way: a refusal may be the backend's passing fault
		// (code 500 in a 2xx envelope), and a fresher result replaces it.
		rep.Undelivered++
		next[r.s.ID] = state.Pending{ID: r.s.ID, Status: r.s.Status, ResponseTime: r.s.ResponseTime, PeerCount: r.s.PeerCount, MeasuredAt: r.at}
		if errors.As(r.err, &he) && !he.Retryable() && he.Status != 401 && he.Status != 403 {
			rep.Rejected++
			j.Log.Error("backend rejected report, kept for the next run", keyPeer, r.s.ID, "status", r.s.Status, keyErrCls, report.ErrorClass(r.err), keyErr, r.err)
		} else {
			j.Log.Warn("report not delivered, kept for the next run", keyPeer, r.s.ID, keyErrCls, report.ErrorClass(r.err), keyErr, r.err)
		}
	}
	for i := range rep.Peers {
		if r := rep.Peers[i].Reported; r != nil {
			_, failed := next[r.ID]
			rep.Peers[i].Delivered = !failed
		}
	}
	rp.st.Pending = next
	rep.Reported = delivered
	return rp.fresh, delivered
}
