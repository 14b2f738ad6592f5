package state

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// runState is what a run of the job over n peers leaves behind: the
// cached peer list and a history entry per peer.
func runState(n int) *State {
	st := New()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	st.Peers.FetchedAt = now
	for i := range n {
		id := int64(i + 1)
		st.Peers.Peers = append(st.Peers.Peers, CachedPeer{ID: id, Name: fmt.Sprintf("node-%d", id), Host: fmt.Sprintf("node%d.example.net", id),
			Port: 11010, Protocol: "tcp", NetworkName: "bench", SealedSecret: "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})
		st.History[id] = History{LastClass: "online", LastRTTUS: 23456, ConsecOK: 12, Reported: "online", ChangedAt: now.Add(-time.Hour),
			LastProbedAt: now, LastVersion: "2.6.4-81487c36", LastPeerCount: 3}
	}
	return st
}

// BenchmarkFileStore_Run is one run's state traffic on a file store with
// n peers: take the lease, load, save, give the lease up.
func BenchmarkFileStore_Run(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := context.Background()
			f := &FileStore{Path: filepath.Join(b.TempDir(), "s.json")}
			if err := f.Acquire(ctx, "seed", time.Minute); err != nil {
				b.Fatal(err)
			}
			if err := f.Save(ctx, "seed", runState(n)); err != nil {
				b.Fatal(err)
			}
			if err := f.Release(ctx, "seed"); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := f.Acquire(ctx, "run", time.Minute); err != nil {
					b.Fatal(err)
				}
				st, err := f.Load(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := f.Save(ctx, "run", st); err != nil {
					b.Fatal(err)
				}
				if err := f.Release(ctx, "run"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
