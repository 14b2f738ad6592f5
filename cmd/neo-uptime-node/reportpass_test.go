package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe"
	"github.com/neouptime/neo-uptime-node/probe/easytier"
	"github.com/neouptime/neo-uptime-node/report"
	"github.com/neouptime/neo-uptime-node/state"
)

// submitLog is a backend that records the order of Submit calls and fails
// the ids in fail; it lists list, counting fetches.
type submitLog struct {
	mu      sync.Mutex
	got     []report.Status
	fail    map[int64]bool
	list    []report.Peer
	fetches int
}

func (b *submitLog) ListTargets(context.Context, string) ([]report.Peer, []string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fetches++
	if b.list == nil {
		return nil, nil, errors.New("no list")
	}
	return b.list, nil, nil
}

func (b *submitLog) Submit(_ context.Context, s report.Status) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, s)
	if b.fail[s.ID] {
		return &report.HTTPError{Status: 503}
	}
	return nil
}

func (b *submitLog) ids() []int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ids []int64
	for _, s := range b.got {
		ids = append(ids, s.ID)
	}
	return ids
}

func okResult(id int64, rttUS int64) probe.Result {
	return probe.Result{Target: probe.Target{ID: id}, Class: probe.ClassOK, Obs: easytier.Observation{SamplesUS: []int64{rttUS}}}
}

func failResult(id int64) probe.Result {
	return probe.Result{Target: probe.Target{ID: id}, Class: probe.ClassRefused, Err: errors.New("refused")}
}

func canceledResult(id int64) probe.Result {
	return probe.Result{Target: probe.Target{ID: id}, Class: probe.ClassCanceled, Err: context.Canceled}
}

// TestReportPass_StreamsAndSettlesPending drives the report pass the way a
// run does: earlier runs' reports for peers not probed go out before any
// result; a result's report goes out when the result arrives, before the
// probe phase ends; a pending report of a probed peer waits for that
// peer's result and is replaced by a reported one, sent when the result is
// unknown or held; what fails stays pending.
func TestReportPass_StreamsAndSettlesPending(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	be := &submitLog{fail: map[int64]bool{5: true}}
	j := &Job{Cfg: &Config{ReportConns: 1, UpAfter: 2, DownAfter: 1}, Backend: be,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return now }}
	st := state.New()
	pend := func(id int64, status string, age time.Duration) {
		st.Pending[id] = state.Pending{ID: id, Status: status, MeasuredAt: now.Add(-age)}
	}
	pend(20, "online", time.Minute)                                   // peer no longer listed: goes first
	pend(10, "offline", time.Minute)                                  // likewise, and before 20
	pend(30, "online", 2*time.Hour)                                   // too old: dropped
	pend(1, "offline", time.Minute)                                   // probed, reported: replaced
	pend(2, "offline", time.Minute)                                   // probed, unknown: sent
	pend(3, "offline", time.Minute)                                   // probed, held: sent
	st.History[3] = state.History{Reported: "offline", ConsecFail: 4} // online now, but -up-after 2 holds it
	var peers []report.Peer
	for _, id := range []int64{1, 2, 3, 4, 5, 6} {
		peers = append(peers, report.Peer{ID: id, Host: "127.0.0.1", Port: 1, Protocol: "tcp"})
	}
	rep := &RunReport{Phases: map[string]float64{}}
	rp := j.startReports(context.Background(), st, peers, rep)

	waitFor := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); len(be.ids()) < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("backend got %v, want %d reports", be.ids(), n)
			}
		}
	}
	waitFor(2)
	if got := be.ids(); !slices.Equal(got, []int64{10, 20}) {
		t.Fatalf("before any result the backend got %v, want the unlisted peers' pending reports [10 20]", got)
	}
	rp.result(okResult(1, 1500))
	waitFor(3)
	if got := be.ids()[2]; got != 1 {
		t.Fatalf("third report is for peer %d, want peer 1's fresh result, sent as it arrived", got)
	}
	rp.result(canceledResult(2)) // unknown: its pending report goes out
	rp.result(okResult(3, 900))  // held: its pending report goes out
	rp.result(failResult(4))     // -down-after 1: reported offline
	rp.result(okResult(5, 2000)) // reported, but the backend fails it
	// Peer 6 never started: finish decides it from the runner's results.
	fresh, delivered := rp.finish([]probe.Result{okResult(1, 1500), canceledResult(2), okResult(3, 900),
		failResult(4), okResult(5, 2000), canceledResult(6)})

	got := be.ids()
	slices.Sort(got)
	if want := []int64{1, 2, 3, 4, 5, 10, 20}; !slices.Equal(got, want) {
		t.Errorf("backend got reports for %v, want %v, each once", got, want)
	}
	if fresh != 3 || delivered != 6 {
		t.Errorf("fresh, delivered = %d, %d; want 3, 6", fresh, delivered)
	}
	if rep.PendingReplaced != 1 || rep.PendingDelivered != 4 || rep.PendingExpired != 1 || rep.Undelivered != 1 {
		t.Errorf("pending replaced %d delivered %d expired %d, undelivered %d; want 1, 4, 1, 1",
			rep.PendingReplaced, rep.PendingDelivered, rep.PendingExpired, rep.Undelivered)
	}
	if p, ok := st.Pending[5]; len(st.Pending) != 1 || !ok || p.Status != "online" || p.ResponseTime != 2 || !p.MeasuredAt.Equal(now) {
		t.Errorf("state pending = %+v, want only peer 5's undelivered online, 2 ms", st.Pending)
	}
	if h := st.History[3]; h.ConsecOK != 1 || h.Reported != "offline" {
		t.Errorf("peer 3 history = %+v, want one ok, still reported offline (held)", h)
	}
	if _, ok := st.History[2]; ok {
		t.Errorf("an unknown result touched peer 2's history: %+v", st.History[2])
	}
	decisions := map[int64]string{}
	for _, p := range rep.Peers {
		decisions[p.ID] = p.Decision
	}
	want := map[int64]string{1: "report", 2: "unknown", 3: "held (online 1/2)", 4: "report", 5: "report", 6: "unknown"}
	for id, d := range want {
		if decisions[id] != d {
			t.Errorf("peer %d decision %q, want %q", id, decisions[id], d)
		}
	}
	if len(rep.Peers) != 6 || !slices.IsSortedFunc(rep.Peers, func(a, b PeerResult) int { return int(a.ID - b.ID) }) {
		t.Errorf("run report lists %d peers (want 6, sorted by id)", len(rep.Peers))
	}
}

// TestReportPass_DeadlineKeepsTheRest: reports not sent before the report
// deadline stay pending, none is lost and none is counted delivered.
func TestReportPass_DeadlineKeepsTheRest(t *testing.T) {
	be := &submitLog{}
	j := &Job{Cfg: &Config{ReportConns: 2, UpAfter: 1, DownAfter: 1}, Backend: be,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	st := state.New()
	peers := []report.Peer{{ID: 1}, {ID: 2}, {ID: 3}}
	ctx, cancel := context.WithCancel(context.Background())
	rep := &RunReport{}
	rp := j.startReports(ctx, st, peers, rep)
	cancel()
	fresh, delivered := rp.finish([]probe.Result{okResult(1, 1000), failResult(2), okResult(3, 1000)})
	if fresh != 3 || delivered != 0 || len(be.ids()) != 0 {
		t.Errorf("fresh %d, delivered %d, backend got %v; want 3, 0, nothing", fresh, delivered, be.ids())
	}
	if len(st.Pending) != 3 || rep.Undelivered != 3 {
		t.Errorf("pending %v, undelivered %d; want all 3 kept", st.Pending, rep.Undelivered)
	}
}
