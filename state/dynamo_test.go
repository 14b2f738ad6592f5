package state

import (
	"context"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/state/dynalitetest"
)

func TestDynamoStore_Conformance(t *testing.T) {
	c, _ := dynalitetest.Start(t)
	testStoreConformance(t, func(t *testing.T, clk *clock) (Store, Store) {
		table := dynalitetest.CreateTable(t, c)
		return &DynamoStore{Client: c, Table: table, Now: clk.Now}, &DynamoStore{Client: c, Table: table, Now: clk.Now}
	})
}

func TestDynamoStore_ExpiredItemsAreIgnored(t *testing.T) {
	c, _ := dynalitetest.Start(t)
	table := dynalitetest.CreateTable(t, c)
	clk := &clock{now: time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)}
	s := &DynamoStore{Client: c, Table: table, Now: clk.Now}
	ctx := context.Background()
	if err := s.Acquire(ctx, "me", time.Minute); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Load(ctx)
	st.Pending[1] = Pending{ID: 1, Status: "offline", MeasuredAt: clk.Now()}
	if err := s.Save(ctx, "me", st); err != nil {
		t.Fatal(err)
	}
	clk.Add(pendingTTL + time.Hour) // emulators never delete expired items
	got, err := s.Load(ctx)
	if err != nil || len(got.Pending) != 0 {
		t.Errorf("Load after TTL = %v pending, %v; want none", got.Pending, err)
	}
}
