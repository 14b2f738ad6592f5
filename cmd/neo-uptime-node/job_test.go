package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe"
	"github.com/neouptime/neo-uptime-node/probe/easytier"
	"github.com/neouptime/neo-uptime-node/report"
	"github.com/neouptime/neo-uptime-node/state"
)

// memStore keeps the state in memory; Load waits for gate, when set, and
// Acquire for leaseGate.
type memStore struct {
	mu        sync.Mutex
	st        *state.State
	gate      func() bool  // Load fails unless it returns true
	leaseGate func() error // Acquire's error
	loadErr   error
}

func (m *memStore) Acquire(context.Context, string, time.Duration) error {
	if m.leaseGate != nil {
		return m.leaseGate()
	}
	return nil
}

func (m *memStore) Release(context.Context, string) error { return nil }

func (m *memStore) Load(context.Context) (*state.State, error) {
	if m.gate != nil && !m.gate() {
		return nil, errors.New("gate not passed")
	}
	if m.loadErr != nil {
		return nil, m.loadErr
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.st == nil {
		return state.New(), nil
	}
	return m.st, nil
}

func (m *memStore) Save(_ context.Context, _ string, st *state.State) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st = st
	return nil
}

func testJob(be backend, st store, fetchInterval time.Duration) *Job {
	cfg := &Config{PeerFetchInterval: fetchInterval, PeerCacheMaxAge: time.Hour, Deadline: 5 * time.Second,
		ReportReserve: time.Second, ReportConns: 2, UpAfter: 1, DownAfter: 1}
	return &Job{Cfg: cfg, Backend: be, Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Sealer: state.NewSealer("k"), Runner: &probe.Runner{Probe: func(context.Context, probe.Target) (easytier.Observation, error) {
			return easytier.Observation{SamplesUS: []int64{1000}}, nil
		}}}
}

// TestJob_LoadsStateWhileFetching: with a fetch interval of 0 every run
// fetches, so the state is read while the list is on its way (the store's
// Load here only succeeds once the fetch has started); a failed load still
// fails the run.
func TestJob_LoadsStateWhileFetching(t *testing.T) {
	be := &submitLog{list: []report.Peer{{ID: 1, Host: "127.0.0.1", Port: 1, Protocol: "tcp"}}}
	ms := &memStore{gate: func() bool { return fetched(be) }}
	rep, err := testJob(be, ms, 0).Run(context.Background())
	if err != nil || rep.PeerSource != "backend" || rep.Reported != 1 {
		t.Fatalf("run: err %v, source %q, reported %d; want the state loaded during the fetch, 1 reported", err, rep.PeerSource, rep.Reported)
	}
	ms.loadErr = errors.New("disk on fire")
	if _, err := testJob(be, ms, 0).Run(context.Background()); err == nil || !errors.Is(err, ms.loadErr) {
		t.Errorf("run with a failing load: err %v, want it", err)
	}
}

// fetched waits up to 5 s for be to have been asked for its list.
func fetched(be *submitLog) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		be.mu.Lock()
		n := be.fetches
		be.mu.Unlock()
		if n > 0 {
			return true
		}
	}
	return false
}

// TestJob_FetchesWhileTakingTheLease: with a fetch interval of 0 the peer
// list is asked for while the lease is taken (the store's Acquire here
// only succeeds once the fetch has started); with an interval, the lease
// comes first, as the cache may make the fetch unneeded.
func TestJob_FetchesWhileTakingTheLease(t *testing.T) {
	be := &submitLog{list: []report.Peer{{ID: 1, Host: "127.0.0.1", Port: 1, Protocol: "tcp"}}}
	ms := &memStore{leaseGate: func() error {
		if !fetched(be) {
			return errors.New("the peer list was not asked for while the lease was taken")
		}
		return nil
	}}
	if rep, err := testJob(be, ms, 0).Run(context.Background()); err != nil || rep.Reported != 1 {
		t.Fatalf("run: err %v, reported %d", err, rep.Reported)
	}
	be.fetches = 0
	ms.leaseGate = func() error {
		be.mu.Lock()
		defer be.mu.Unlock()
		if be.fetches != 0 {
			return errors.New("fetched before the lease with a fetch interval set")
		}
		return nil
	}
	if rep, err := testJob(be, ms, time.Minute).Run(context.Background()); err != nil || rep.Reported != 1 {
		t.Fatalf("run with a fetch interval: err %v, reported %d", err, rep.Reported)
	}
}

// listUntilCanceled is a backend whose peer list never comes: ListTargets
// says it started, then waits for its context to end.
type listUntilCanceled struct {
	submitLog
	started chan struct{}
	ended   atomic.Bool
}

func (b *listUntilCanceled) ListTargets(ctx context.Context, _ string) ([]report.Peer, []string, error) {
	close(b.started)
	<-ctx.Done()
	b.ended.Store(true)
	return nil, nil, ctx.Err()
}

// TestJob_HeldLeaseAbandonsTheFetch: a run that finds the lease held skips
// and ends the fetch it started; no request outlives Run.
func TestJob_HeldLeaseAbandonsTheFetch(t *testing.T) {
	be := &listUntilCanceled{started: make(chan struct{})}
	until := time.Now().Add(time.Minute)
	ms := &memStore{leaseGate: func() error {
		select {
		case <-be.started:
			return &state.LeaseHeldError{Owner: "other", Until: until}
		case <-time.After(5 * time.Second):
			return errors.New("no fetch started while the lease was taken")
		}
	}}
	rep, err := testJob(be, ms, 0).Run(context.Background())
	if err != nil || !rep.Skipped || rep.LeaseOwner != "other" {
		t.Fatalf("run: err %v, skipped %v, owner %q; want skipped for other", err, rep.Skipped, rep.LeaseOwner)
	}
	if !be.ended.Load() {
		t.Error("the peer list's fetch was still going when Run returned")
	}
}

// TestJob_FetchIntervalReusesCache: with a fetch interval, a run within it
// probes the cached list without fetching; after it, the run fetches; a
// failed fetch falls back to the cache.
func TestJob_FetchIntervalReusesCache(t *testing.T) {
	be := &submitLog{list: []report.Peer{{ID: 7, Host: "127.0.0.1", Port: 1, Protocol: "tcp", NetworkSecret: "s"}}}
	ms := &memStore{}
	run := func(fetchedAgo time.Duration) *RunReport {
		t.Helper()
		if ms.st != nil {
			ms.st.Peers.FetchedAt = time.Now().Add(-fetchedAgo)
		}
		rep, err := testJob(be, ms, time.Minute).Run(context.Background())
		if err != nil || rep.Reported != 1 {
			t.Fatalf("run with a list fetched %v ago: err %v, reported %d", fetchedAgo, err, rep.Reported)
		}
		return rep
	}
	if rep := run(0); rep.PeerSource != "backend" || be.fetches != 1 {
		t.Errorf("first run: source %q after %d fetches, want backend, 1", rep.PeerSource, be.fetches)
	}
	if rep := run(30 * time.Second); rep.PeerSource != "cache" || be.fetches != 1 {
		t.Errorf("run inside the interval: source %q after %d fetches, want cache, still 1", rep.PeerSource, be.fetches)
	}
	if rep := run(90 * time.Second); rep.PeerSource != "backend" || be.fetches != 2 {
		t.Errorf("run after the interval: source %q after %d fetches, want backend, 2", rep.PeerSource, be.fetches)
	}
	be.list = nil
	if rep := run(90 * time.Second); rep.PeerSource != "cache" || be.fetches != 3 {
		t.Errorf("run with the backend failing: source %q after %d fetches, want cache, 3", rep.PeerSource, be.fetches)
	}
}

// TestJob_ProgressAtDebugLevel: at debug level each probe's result is a
// log line with its place in the run; at info level there are none, and
// every result still reaches the report pass.
func TestJob_ProgressAtDebugLevel(t *testing.T) {
	list := []report.Peer{{ID: 1, Host: "127.0.0.1", Port: 1, Protocol: "tcp"}, {ID: 2, Host: "127.0.0.1", Port: 2, Protocol: "tcp"}}
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		be := &submitLog{list: list}
		var logs strings.Builder
		j := testJob(be, &memStore{}, 0)
		j.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: level}))
		rep, err := j.Run(context.Background())
		if err != nil || rep.Reported != 2 {
			t.Fatalf("%v: err %v, reported %d, want 2", level, err, rep.Reported)
		}
		lines := strings.Count(logs.String(), "msg=probe ")
		want := map[slog.Level]int{slog.LevelDebug: 2, slog.LevelInfo: 0}[level]
		if lines != want {
			t.Errorf("%v: %d probe lines, want %d:\n%s", level, lines, want, logs.String())
		}
		if level == slog.LevelDebug && (!strings.Contains(logs.String(), "done=2 of=2") || !strings.Contains(logs.String(), "peer_id=2")) {
			t.Errorf("debug lines lack the progress or the peer:\n%s", logs.String())
		}
	}
}
