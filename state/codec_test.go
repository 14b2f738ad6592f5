package state

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// codecStates are states with what the codec must get right: omitted and
// written empty fields, nil against empty lists and maps, times in other
// zones and with nanoseconds, strings JSON escapes.
func codecStates() []*State {
	tokyo := time.FixedZone("", 9*3600)
	t1 := time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC)
	odd := "a\"b\\c\n\t\r\b\f\x00\x1f<>&\u2028\u2029é東京\xff\xfe end"
	full := runState(3)
	full.Lease = Lease{Owner: "host/1/" + odd, Expires: t1.In(tokyo)}
	full.Peers.Peers[1].Name, full.Peers.Peers[1].Unsupported = odd, true
	full.Peers.Peers[2].SealedSecret = ""
	full.History[-7] = History{}
	full.History[1<<62] = History{LastClass: odd, ChangedAt: t1.In(tokyo), LastProbedAt: time.Time{}.In(tokyo)}
	full.Pending[12] = Pending{ID: 12, Status: "offline", ResponseTime: -1, PeerCount: 1 << 40, MeasuredAt: t1}
	full.Pending[3] = Pending{}
	full.SavedAt = t1
	return []*State{
		{},
		New(),
		{Schema: Schema, Version: Version, Peers: PeerCache{Peers: []CachedPeer{}}, History: map[int64]History{}},
		{Lease: Lease{Expires: t1}},
		{Lease: Lease{Owner: "x"}},
		runState(20),
		full,
	}
}

func TestMarshalState_IsJSONMarshal(t *testing.T) {
	for i, st := range codecStates() {
		want, werr := json.Marshal(st)
		got, err := marshalState(st)
		if werr != nil || err != nil || !bytes.Equal(got, want) {
			t.Errorf("state %d:\n got %s (%v)\nwant %s (%v)", i, got, err, want, werr)
		}
	}
	// What RFC 3339 cannot hold fails, as in json.Marshal.
	bad := New()
	bad.SavedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := marshalState(bad); err == nil {
		t.Error("a year past 9999 was written")
	}
}

func TestParseState_ReadsWhatItWritesAsJSONDoes(t *testing.T) {
	for i, st := range codecStates() {
		b, err := marshalState(st)
		if err != nil {
			t.Fatal(err)
		}
		var ind bytes.Buffer
		if err := json.Indent(&ind, b, "", "  "); err != nil {
			t.Fatal(err)
		}
		for _, form := range [][]byte{b, ind.Bytes(), append(append([]byte(" \n"), b...), "\r\n\t"...)} {
			var want, got State
			if err := json.Unmarshal(form, &want); err != nil {
				t.Fatal(err)
			}
			if err := parseState(form, &got); err != nil {
				t.Errorf("state %d: parseState: %v\n%s", i, err, form)
				continue
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("state %d:\n got %+v\nwant %+v", i, got, want)
			}
		}
	}
}

func TestParseState_LeavesTheRestToJSON(t *testing.T) {
	// Each is valid JSON that json.Unmarshal reads into a State (or
	// refuses) but parseState does not take; decodeState must still give
	// json.Unmarshal's result.
	for _, in := range []string{
		`{"Schema":"neo-uptime-node/state","version":1}`,            // a key in another case
		`{"schema":"a","schema":"b"}`,                               // a repeated field
		`{"schema":"neo-uptime-node/state","extra":[1,{"x":null}]}`, // an unknown field
		`{"history":{"1":{}},"history":{"2":{}}}`,                   // json merges these
		`{"history":{"1":{"consec_ok":3},"+1":{"consec_fail":2}}}`,  // one key twice
		`{"lease":null,"saved_at":null}`,                            // nulls json skips
		`{"version":1.0}`,                                           // refused by both
		`{"schema":"\ud83d\ude00"}`,                                 // a surrogate pair
		`{"schema":"` + "\xff" + `"}`,                               // invalid UTF-8
		`{"saved_at":"2026-11-27T10:00:00.5+25:00"}`,                // refused by both
		`null`, `{}x`, ``, `[]`,
	} {
		var want, got State
		werr := json.Unmarshal([]byte(in), &want)
		if err := parseState([]byte(in), &State{}); err == nil && in != `{}` {
			t.Errorf("parseState took %s", in)
		}
		err := decodeState([]byte(in), &got)
		if (err == nil) != (werr == nil) || err == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("decodeState(%s) = %+v, %v; json.Unmarshal: %+v, %v", in, got, err, want, werr)
		}
	}
}

// FuzzParseState holds parseState to json.Unmarshal on any input: what it
// takes, json.Unmarshal takes too, and reads alike.
func FuzzParseState(f *testing.F) {
	for _, st := range codecStates() {
		b, _ := marshalState(st)
		f.Add(b)
		var ind bytes.Buffer
		_ = json.Indent(&ind, b, "", " ")
		f.Add(ind.Bytes())
	}
	f.Add([]byte(`{"peer_cache":{"peers":[{"id":-0,"port":1e2}]}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var got State
		if parseState(in, &got) != nil {
			return
		}
		var want State
		if err := json.Unmarshal(in, &want); err != nil {
			t.Fatalf("parseState took what json.Unmarshal refuses (%v): %q", err, in)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nparseState     %+v\njson.Unmarshal %+v", in, got, want)
		}
	})
}

// FuzzMarshalState builds a state from the fuzzer's bytes and holds
// marshalState to json.Marshal, and parseState to json.Unmarshal on the
// result.
func FuzzMarshalState(f *testing.F) {
	f.Add([]byte("seed"), "name", int64(1), int64(1700000000123456789))
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, "\xff<&\u2028", int64(-5), int64(-1))
	f.Fuzz(func(t *testing.T, shape []byte, s string, n int64, ns int64) {
		st := stateFrom(shape, s, n, ns)
		want, werr := json.Marshal(st)
		got, err := marshalState(st)
		if (err == nil) != (werr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("marshalState:\n got %s (%v)\nwant %s (%v)", got, err, want, werr)
		}
		if err != nil {
			return
		}
		var back, jback State
		if err := json.Unmarshal(got, &jback); err != nil {
			t.Fatal(err)
		}
		if err := parseState(got, &back); err != nil {
			t.Fatalf("parseState refused what marshalState wrote: %s", got)
		}
		if !reflect.DeepEqual(back, jback) {
			t.Fatalf("parseState:\n got %+v\nwant %+v", back, jback)
		}
	})
}

// stateFrom makes a state whose shape (which fields are set, nil or
// empty) comes from shape, with s for every string and n and ns for the
// numbers and times.
func stateFrom(shape []byte, s string, n int64, ns int64) *State {
	bit := func(i int) bool { return len(shape) > i/8 && shape[i/8]>>(i%8)&1 == 1 }
	zones := []*time.Location{time.UTC, time.FixedZone("", -9*3600-30*60), time.FixedZone("x", 14*3600), time.FixedZone("", 90)}
	tm := func(i int) time.Time {
		if bit(i) {
			return time.Time{}
		}
		var z byte
		if len(shape) > 0 {
			z = shape[len(shape)-1]
		}
		return time.Unix(0, ns+int64(i)).In(zones[int(z)%len(zones)])
	}
	st := &State{Schema: s, Version: int(n)}
	if bit(0) {
		st.Lease = Lease{Owner: s, Expires: tm(1)}
	}
	st.Peers.FetchedAt = tm(2)
	if bit(3) {
		st.Peers.Peers = []CachedPeer{}
		for i := range int(n&3) + int(binary.LittleEndian.Uint16(append(shape, 0, 0)[:2])&1) {
			st.Peers.Peers = append(st.Peers.Peers, CachedPeer{ID: n + int64(i), Name: s[:len(s)*i%(len(s)+1)], Host: s, Port: int(n), Protocol: "tcp",
				SealedSecret: s, Unsupported: bit(4 + i)})
		}
	}
	if bit(8) {
		st.History = map[int64]History{}
		for i := range int(n & 7) {
			st.History[n*int64(i)-int64(i)] = History{LastClass: s, LastRTTUS: n, ConsecFail: i, ConsecOK: int(n) * i, Reported: s[:len(s)/2],
				ChangedAt: tm(9 + i), LastProbedAt: tm(10), LastVersion: s, LastPeerCount: -i}
		}
	}
	if bit(16) {
		st.Pending = map[int64]Pending{n: {ID: n, Status: s, ResponseTime: ns, PeerCount: int(n), MeasuredAt: tm(17)}, -n - 1: {}}
	}
	st.SavedAt = tm(18)
	return st
}
