package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// dynamoAPI is the part of the DynamoDB client the store uses.
type dynamoAPI interface {
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	BatchWriteItem(context.Context, *dynamodb.BatchWriteItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
}

var _ dynamoAPI = (*dynamodb.Client)(nil)

// Item layout in one table with string keys pk/sk and a numeric ttl:
//
//	pk=lease   sk=lease            owner, expires (unix ms)
//	pk=peers   sk=meta             generation, fetched_at, chunks
//	pk=peers   sk=g<gen>#<n>       body: a JSON chunk of the peer list
//	pk=hist    sk=<peer id>        body: History JSON; ttl 30 days after the last probe
//	pk=pending sk=<peer id>        body: Pending JSON; ttl 7 days after the measurement
const (
	historyTTL  = 30 * 24 * time.Hour
	pendingTTL  = 7 * 24 * time.Hour
	chunkBytes  = 300 << 10 // stay well under the 400 KB item limit
	batchLimit  = 25
	maxBackoffs = 8
)

// DynamoStore keeps the state in DynamoDB and behaves like FileStore. It
// remembers what it loaded so Save writes only what changed.
type DynamoStore struct {
	Client dynamoAPI
	Table  string
	Now    func() time.Time

	mu     sync.Mutex
	loaded *State
	gen    int64
}

func (d *DynamoStore) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}, "sk": &types.AttributeValueMemberS{Value: sk}}
}

func num(n int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}
func str(s string) *types.AttributeValueMemberS { return &types.AttributeValueMemberS{Value: s} }

func getS(item map[string]types.AttributeValue, k string) string {
	if v, ok := item[k].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func getN(item map[string]types.AttributeValue, k string) int64 {
	if v, ok := item[k].(*types.AttributeValueMemberN); ok {
		n, _ := strconv.ParseInt(v.Value, 10, 64)
		return n
	}
	return 0
}

// Acquire takes the lease with a conditional put: free, expired, or ours.
func (d *DynamoStore) Acquire(ctx context.Context, owner string, ttl time.Duration) error {
	now := d.now()
	exp := now.Add(ttl)
	item := key("lease", "lease")
	item["owner"], item["expires"], item["ttl"] = str(owner), num(exp.UnixMilli()), num(exp.Add(time.Hour).Unix())
	_, err := d.Client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                 &d.Table,
		Item:                      item,
		ConditionExpression:       aws.String("attribute_not_exists(pk) OR #exp < :now OR #o = :me"),
		ExpressionAttributeNames:  map[string]string{"#exp": "expires", "#o": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":now": num(now.UnixMilli()), ":me": str(owner)},
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		cur, gerr := d.lease(ctx)
		if gerr != nil {
			return gerr
		}
		return &LeaseHeldError{Owner: cur.Owner, Until: cur.Expires}
	}
	if err != nil {
		return fmt.Errorf("acquiring lease in %s: %w", d.Table, err)
	}
	return nil
}

func (d *DynamoStore) lease(ctx context.Context) (Lease, error) {
	out, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{TableName: &d.Table, Key: key("lease", "lease"), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return Lease{}, fmt.Errorf("reading lease from %s: %w", d.Table, err)
	}
	if out.Item == nil {
		return Lease{}, nil
	}
	return Lease{Owner: getS(out.Item, "owner"), Expires: time.UnixMilli(getN(out.Item, "expires")).UTC()}, nil
}

// Release deletes the lease if owner still holds it.
func (d *DynamoStore) Release(ctx context.Context, owner string) error {
	_, err := d.Client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 &d.Table,
		Key:                       key("lease", "lease"),
		ConditionExpression:       aws.String("#o = :me"),
		ExpressionAttributeNames:  map[string]string{"#o": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":me": str(owner)},
	})
	var ccf *types.ConditionalCheckFailedException
	if err != nil && !errors.As(err, &ccf) {
		return fmt.Errorf("releasing lease in %s: %w", d.Table, err)
	}
	return nil
}

// query returns every unexpired item under pk (TTL deletion is lazy).
func (d *DynamoStore) query(ctx context.Context, pk string) ([]map[string]types.AttributeValue, error) {
	var items []map[string]types.AttributeValue
	var start map[string]types.AttributeValue
	nowSec := d.now().Unix()
	for {
		out, err := d.Client.Query(ctx, &dynamodb.QueryInput{
			TableName:                 &d.Table,
			KeyConditionExpression:    aws.String("#pk = :pk"),
			ExpressionAttributeNames:  map[string]string{"#pk": "pk"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str(pk)},
			ConsistentRead:            aws.Bool(true),
			ExclusiveStartKey:         start,
		})
		if err != nil {
			return nil, fmt.Errorf("querying %s/%s: %w", d.Table, pk, err)
		}
		for _, it := range out.Items {
			if t := getN(it, "ttl"); t != 0 && t < nowSec {
				continue
			}
			items = append(items, it)
		}
		if len(out.LastEvaluatedKey) == 0 {
			return items, nil
		}
		start = out.LastEvaluatedKey
	}
}

// Load reads the state.
func (d *DynamoStore) Load(ctx context.Context) (*State, error) {
	st := New()
	l, err := d.lease(ctx)
	if err != nil {
		return nil, err
	}
	st.Lease = l
	for _, pk := range []string{"hist", "pending"} {
		items, err := d.query(ctx, pk)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			id, err := strconv.ParseInt(getS(it, "sk"), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%w: %s item %q", ErrCorrupt, pk, getS(it, "sk"))
			}
			body := []byte(getS(it, "body"))
			if pk == "hist" {
				var h History
				if err := json.Unmarshal(body, &h); err != nil {
					return nil, fmt.Errorf("%w: history of peer %d: %v", ErrCorrupt, id, err)
				}
				st.History[id] = h
			} else {
				var p Pending
				if err := json.Unmarshal(body, &p); err != nil {
					return nil, fmt.Errorf("%w: pending report of peer %d: %v", ErrCorrupt, id, err)
				}
				st.Pending[id] = p
			}
		}
	}
	peers, gen, err := d.loadPeers(ctx)
	if err != nil {
		return nil, err
	}
	st.Peers = peers
	d.mu.Lock()
	d.loaded, d.gen = cloneState(st), gen
	d.mu.Unlock()
	return st, nil
}

func (d *DynamoStore) loadPeers(ctx context.Context) (PeerCache, int64, error) {
	items, err := d.query(ctx, "peers")
	if err != nil {
		return PeerCache{}, 0, err
	}
	var meta map[string]types.AttributeValue
	chunks := map[string]string{}
	for _, it := range items {
		if sk := getS(it, "sk"); sk == "meta" {
			meta = it
		} else {
			chunks[sk] = getS(it, "body")
		}
	}
	if meta == nil {
		return PeerCache{}, 0, nil
	}
	if v := getN(meta, "schema_version"); v != Version {
		return PeerCache{}, 0, fmt.Errorf("%w: table %s holds version %d", ErrUnknownSchema, d.Table, v)
	}
	gen, n := getN(meta, "generation"), getN(meta, "chunks")
	var sb strings.Builder
	for i := int64(0); i < n; i++ {
		c, ok := chunks[fmt.Sprintf("g%d#%d", gen, i)]
		if !ok {
			return PeerCache{}, 0, fmt.Errorf("%w: peer list chunk %d of generation %d missing", ErrCorrupt, i, gen)
		}
		sb.WriteString(c)
	}
	pc := PeerCache{FetchedAt: time.UnixMilli(getN(meta, "fetched_at")).UTC()}
	if err := json.Unmarshal([]byte(sb.String()), &pc.Peers); err != nil {
		return PeerCache{}, 0, fmt.Errorf("%w: peer list: %v", ErrCorrupt, err)
	}
	return pc, gen, nil
}

func cloneState(s *State) *State {
	c := *s
	c.History = make(map[int64]History, len(s.History))
	for k, v := range s.History {
		c.History[k] = v
	}
	c.Pending = make(map[int64]Pending, len(s.Pending))
	for k, v := range s.Pending {
		c.Pending[k] = v
	}
	c.Peers.Peers = append([]CachedPeer(nil), s.Peers.Peers...)
	return &c
}

// Save writes what changed since Load, if owner still holds the lease.
func (d *DynamoStore) Save(ctx context.Context, owner string, st *State) error {
	l, err := d.lease(ctx)
	if err != nil {
		return err
	}
	if l.Owner != owner {
		return fmt.Errorf("saving state: %w (%s)", ErrNotOwner, l.Owner)
	}
	d.mu.Lock()
	old, gen := d.loaded, d.gen
	d.mu.Unlock()
	if old == nil {
		old = New()
	}
	now := d.now()
	var writes []types.WriteRequest
	put := func(item map[string]types.AttributeValue) {
		writes = append(writes, types.WriteRequest{PutRequest: &types.PutRequest{Item: item}})
	}
	del := func(pk, sk string) {
		writes = append(writes, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key(pk, sk)}})
	}
	for id, h := range st.History {
		if o, ok := old.History[id]; ok && o == h {
			continue
		}
		b, _ := json.Marshal(h)
		it := key("hist", strconv.FormatInt(id, 10))
		it["body"], it["ttl"] = str(string(b)), num(h.LastProbedAt.Add(historyTTL).Unix())
		if h.LastProbedAt.IsZero() {
			it["ttl"] = num(now.Add(historyTTL).Unix())
		}
		put(it)
	}
	for id, p := range st.Pending {
		if o, ok := old.Pending[id]; ok && o == p {
			continue
		}
		b, _ := json.Marshal(p)
		it := key("pending", strconv.FormatInt(id, 10))
		it["body"], it["ttl"] = str(string(b)), num(p.MeasuredAt.Add(pendingTTL).Unix())
		put(it)
	}
	for id := range old.Pending {
		if _, ok := st.Pending[id]; !ok {
			del("pending", strconv.FormatInt(id, 10))
		}
	}
	var metaItem map[string]types.AttributeValue
	var oldChunks int
	if !st.Peers.FetchedAt.Equal(old.Peers.FetchedAt) || !reflect.DeepEqual(st.Peers.Peers, old.Peers.Peers) {
		body, err := json.Marshal(st.Peers.Peers)
		if err != nil {
			return err
		}
		newGen := gen + 1
		n := 0
		for off := 0; off < len(body) || n == 0; off += chunkBytes {
			it := key("peers", fmt.Sprintf("g%d#%d", newGen, n))
			it["body"] = str(string(body[off:min(off+chunkBytes, len(body))]))
			put(it)
			n++
		}
		metaItem = key("peers", "meta")
		metaItem["generation"], metaItem["chunks"] = num(newGen), num(int64(n))
		metaItem["fetched_at"], metaItem["schema_version"] = num(st.Peers.FetchedAt.UnixMilli()), num(Version)
		oldChunks = len(old.Peers.Peers)
		gen = newGen
	}
	if err := d.batchWrite(ctx, writes); err != nil {
		return err
	}
	if metaItem != nil {
		// The meta item switches readers to the new generation only once
		// every chunk of it is written; then the old chunks go.
		if _, err := d.Client.PutItem(ctx, &dynamodb.PutItemInput{TableName: &d.Table, Item: metaItem}); err != nil {
			return fmt.Errorf("writing peer list meta: %w", err)
		}
		if gen > 1 || oldChunks > 0 {
			if err := d.deleteGeneration(ctx, gen-1); err != nil {
				return err
			}
		}
	}
	d.mu.Lock()
	d.loaded, d.gen = cloneState(st), gen
	d.mu.Unlock()
	return nil
}

func (d *DynamoStore) deleteGeneration(ctx context.Context, gen int64) error {
	items, err := d.query(ctx, "peers")
	if err != nil {
		return err
	}
	prefix := fmt.Sprintf("g%d#", gen)
	var dels []types.WriteRequest
	for _, it := range items {
		if sk := getS(it, "sk"); strings.HasPrefix(sk, prefix) {
			dels = append(dels, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key("peers", sk)}})
		}
	}
	return d.batchWrite(ctx, dels)
}

// batchWrite sends writes 25 at a time and resubmits unprocessed items with
// exponential backoff, bounded by ctx.
func (d *DynamoStore) batchWrite(ctx context.Context, writes []types.WriteRequest) error {
	for len(writes) > 0 {
		n := min(batchLimit, len(writes))
		batch := writes[:n]
		writes = writes[n:]
		wait := 50 * time.Millisecond
		for tries := 0; len(batch) > 0; tries++ {
			out, err := d.Client.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{
				RequestItems: map[string][]types.WriteRequest{d.Table: batch},
			})
			if err != nil {
				return fmt.Errorf("writing state to %s: %w", d.Table, err)
			}
			batch = out.UnprocessedItems[d.Table]
			if len(batch) == 0 {
				break
			}
			if tries >= maxBackoffs {
				return fmt.Errorf("writing state to %s: %d items still unprocessed after %d tries", d.Table, len(batch), tries+1)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("writing state to %s: %w", d.Table, ctx.Err())
			case <-time.After(wait):
			}
			wait = min(wait*2, 2*time.Second)
		}
	}
	return nil
}
