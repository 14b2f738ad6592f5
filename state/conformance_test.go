package state

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// Store is what both implementations provide (the job declares the same).
type Store interface {
	Acquire(ctx context.Context, owner string, ttl time.Duration) error
	Release(ctx context.Context, owner string) error
	Load(ctx context.Context) (*State, error)
	Save(ctx context.Context, owner string, st *State) error
}

var (
	_ Store = (*FileStore)(nil)
	_ Store = (*DynamoStore)(nil)
)

// clock is a settable time source shared by a store under test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testStoreConformance runs the same behaviour checks on any store.
// newStore returns a fresh, empty store and a second handle on the same
// data (as a second process would have).
func testStoreConformance(t *testing.T, newStore func(t *testing.T, clk *clock) (Store, Store)) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

	t.Run("empty load", func(t *testing.T) {
		s, _ := newStore(t, &clock{now: t0})
		st, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.History) != 0 || len(st.Pending) != 0 || len(st.Peers.Peers) != 0 || st.Lease.Owner != "" {
			t.Errorf("Load(empty) = %+v, want empty", st)
		}
	})

	t.Run("lease", func(t *testing.T) {
		clk := &clock{now: t0}
		a, b := newStore(t, clk)
		if err := a.Acquire(ctx, "run-a", time.Minute); err != nil {
			t.Fatal(err)
		}
		err := b.Acquire(ctx, "run-b", time.Minute)
		var held *LeaseHeldError
		if !errors.As(err, &held) || held.Owner != "run-a" || !held.Until.Equal(t0.Add(time.Minute)) {
			t.Fatalf("second Acquire = %v, want held by run-a until %v", err, t0.Add(time.Minute))
		}
		if err := a.Acquire(ctx, "run-a", time.Minute); err != nil {
			t.Errorf("re-Acquire by the owner = %v, want nil", err)
		}
		if err := b.Release(ctx, "run-b"); err != nil {
			t.Errorf("Release by a non-owner = %v, want nil (no-op)", err)
		}
		if err := b.Acquire(ctx, "run-b", time.Minute); err == nil {
			t.Error("a non-owner's Release freed the lease")
		}
		clk.Add(2 * time.Minute) // run-a crashed: its lease expires by itself
		if err := b.Acquire(ctx, "run-b", time.Minute); err != nil {
			t.Fatalf("Acquire after expiry = %v", err)
		}
		st, _ := b.Load(ctx)
		if err := a.Save(ctx, "run-a", st); !errors.Is(err, ErrNotOwner) {
			t.Errorf("Save by the expired owner = %v, want ErrNotOwner", err)
		}
		if err := b.Release(ctx, "run-b"); err != nil {
			t.Fatal(err)
		}
		if err := a.Acquire(ctx, "run-a", time.Minute); err != nil {
			t.Errorf("Acquire after Release = %v", err)
		}
	})

	t.Run("round trip", func(t *testing.T) {
		clk := &clock{now: t0}
		a, b := newStore(t, clk)
		if err := a.Acquire(ctx, "me", time.Minute); err != nil {
			t.Fatal(err)
		}
		st, err := a.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st.Peers = PeerCache{FetchedAt: t0, Peers: []CachedPeer{{ID: 1, Host: "h", Port: 11010, Protocol: "tcp", NetworkName: "n", SealedSecret: "x"}}}
		for i := int64(1); i <= 60; i++ { // more than two batches of 25
			st.History[i] = History{LastClass: "ok", ConsecOK: int(i), Reported: "online", LastProbedAt: t0, ChangedAt: t0}
		}
		st.Pending[7] = Pending{ID: 7, Status: "offline", MeasuredAt: t0}
		if err := a.Save(ctx, "me", st); err != nil {
			t.Fatal(err)
		}
		got, err := b.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.History) != 60 || got.History[42].ConsecOK != 42 || got.Pending[7].Status != "offline" ||
			len(got.Peers.Peers) != 1 || !got.Peers.FetchedAt.Equal(t0) || got.Peers.Peers[0].SealedSecret != "x" {
			t.Errorf("Load after Save = %d history, pending %+v, peers %+v", len(got.History), got.Pending, got.Peers)
		}
		// Delivered pending reports disappear; changed history is updated.
		delete(st.Pending, 7)
		h := st.History[3]
		h.ConsecFail, h.Reported = 2, "offline"
		st.History[3] = h
		st.Peers.Peers = append(st.Peers.Peers, CachedPeer{ID: 2, Host: "h2", Port: 1, Protocol: "udp", NetworkName: "n"})
		if err := a.Save(ctx, "me", st); err != nil {
			t.Fatal(err)
		}
		got, _ = b.Load(ctx)
		if len(got.Pending) != 0 || got.History[3].Reported != "offline" || len(got.Peers.Peers) != 2 {
			t.Errorf("second Save: pending %v, history[3] %+v, %d peers", got.Pending, got.History[3], len(got.Peers.Peers))
		}
	})

	t.Run("large peer list", func(t *testing.T) {
		a, b := newStore(t, &clock{now: t0})
		if err := a.Acquire(ctx, "me", time.Minute); err != nil {
			t.Fatal(err)
		}
		st, _ := a.Load(ctx)
		for i := 0; i < 5000; i++ {
			st.Peers.Peers = append(st.Peers.Peers, CachedPeer{ID: int64(i), Name: strings.Repeat("n", 80), Host: fmt.Sprintf("node-%d.example.com", i), Port: 11010, Protocol: "tcp", NetworkName: "net"})
		}
		st.Peers.FetchedAt = t0
		if err := a.Save(ctx, "me", st); err != nil {
			t.Fatal(err)
		}
		got, err := b.Load(ctx)
		if err != nil || len(got.Peers.Peers) != 5000 || got.Peers.Peers[4999].ID != 4999 {
			t.Errorf("Load = %d peers, %v; want 5000", len(got.Peers.Peers), err)
		}
	})

	t.Run("concurrent acquire", func(t *testing.T) {
		clk := &clock{now: t0}
		a, b := newStore(t, clk)
		var wg sync.WaitGroup
		wins := make([]bool, 10)
		for i := range wins {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				s := a
				if i%2 == 1 {
					s = b
				}
				wins[i] = s.Acquire(ctx, fmt.Sprintf("run-%d", i), time.Minute) == nil
			}(i)
		}
		wg.Wait()
		n := 0
		for _, w := range wins {
			if w {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d of 10 concurrent Acquires won, want exactly 1", n)
		}
	})
}
