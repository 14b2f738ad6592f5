package state

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/neouptime/neo-uptime-node/state/dynalitetest"
)

// throttling wraps a real client: the first batches come back partly
// unprocessed (as DynamoDB does under load), and it can fail outright.
type throttling struct {
	dynamoAPI
	unprocessedBatches atomic.Int32
	failBatches        atomic.Bool
	batches            atomic.Int32
}

func (t *throttling) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	t.batches.Add(1)
	for _, reqs := range in.RequestItems {
		if len(reqs) > batchLimit {
			return nil, errors.New("more than 25 items in one batch")
		}
	}
	if t.failBatches.Load() {
		return nil, &types.ProvisionedThroughputExceededException{Message: strPtr("throttled")}
	}
	if t.unprocessedBatches.Add(-1) >= 0 {
		// Write half, hand back the other half.
		for table, reqs := range in.RequestItems {
			half := len(reqs) / 2
			if _, err := t.dynamoAPI.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: reqs[:half]}}, opts...); err != nil {
				return nil, err
			}
			return &dynamodb.BatchWriteItemOutput{UnprocessedItems: map[string][]types.WriteRequest{table: reqs[half:]}}, nil
		}
	}
	return t.dynamoAPI.BatchWriteItem(ctx, in, opts...)
}

func strPtr(s string) *string { return &s }

func TestDynamoStore_UnprocessedItemsAndThrottling(t *testing.T) {
	c, _ := dynalitetest.Start(t)
	table := dynalitetest.CreateTable(t, c)
	th := &throttling{dynamoAPI: c}
	th.unprocessedBatches.Store(5)
	s := &DynamoStore{Client: th, Table: table}
	ctx := context.Background()
	if err := s.Acquire(ctx, "me", time.Minute); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Load(ctx)
	for i := int64(0); i < 120; i++ {
		st.History[i] = History{LastClass: "ok", ConsecOK: int(i) + 1}
	}
	if err := s.Save(ctx, "me", st); err != nil {
		t.Fatalf("Save with unprocessed items = %v", err)
	}
	if th.batches.Load() < 5+5 {
		t.Errorf("only %d batch calls: unprocessed items were not resubmitted", th.batches.Load())
	}
	got, err := (&DynamoStore{Client: c, Table: table}).Load(ctx)
	if err != nil || len(got.History) != 120 || got.History[119].ConsecOK != 120 {
		t.Fatalf("after Save: %d history items, %v; want all 120", len(got.History), err)
	}
	// Throttled beyond the SDK's own retries: Save fails clearly, the
	// previous state stays readable, and the next Save writes it all.
	th.failBatches.Store(true)
	h := st.History[1]
	h.ConsecOK = 99
	st.History[1] = h
	err = s.Save(ctx, "me", st)
	var pte *types.ProvisionedThroughputExceededException
	if !errors.As(err, &pte) || !strings.Contains(err.Error(), table) {
		t.Errorf("Save while throttled = %v, want a throughput error naming the table", err)
	}
	th.failBatches.Store(false)
	if err := s.Save(ctx, "me", st); err != nil {
		t.Fatal(err)
	}
	got, _ = (&DynamoStore{Client: c, Table: table}).Load(ctx)
	if got.History[1].ConsecOK != 99 {
		t.Errorf("history after recovery = %+v", got.History[1])
	}
}
