package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The state file is JSON as encoding/json writes a State, and could be
// read back the same way; but reflection made it the dearest part of a run
// outside its probes, on the path of every run: reading ~7 ms and writing
// ~3 ms for 1,000 peers here, ten times that for 10,000
// (BenchmarkFileStore_Run: 12-15 ms a run's state traffic before, 5.3
// after; 10,000 peers 102-134 ms, 52 after). So a FileStore writes it with
// appendState, which gives json.Marshal's very bytes (TestMarshalState_*,
// FuzzMarshalState), and reads it with parseState, which takes the file as
// appendState writes it (also indented, `jq .`) and gives up on anything
// else, which json.Unmarshal then reads (decodeState). What parseState
// takes, json.Unmarshal reads alike (FuzzParseState).

// marshalState is json.Marshal(st).
func marshalState(st *State) ([]byte, error) {
	return appendState(make([]byte, 0, 256+256*(len(st.Peers.Peers)+len(st.History))+128*len(st.Pending)), st)
}

// decodeState is json.Unmarshal(b, st) into a fresh st, quicker for the
// file as written.
func decodeState(b []byte, st *State) error {
	var fast State
	if parseState(b, &fast) == nil {
		*st = fast
		return nil
	}
	return json.Unmarshal(b, st)
}

func appendState(b []byte, st *State) ([]byte, error) {
	var err error
	b = append(b, `{"schema":`...)
	b = appendString(b, st.Schema)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(st.Version), 10)
	if st.Lease != (Lease{}) {
		b = append(b, `,"lease":{`...)
		comma := false
		if st.Lease.Owner != "" {
			b = appendString(append(b, `"owner":`...), st.Lease.Owner)
			comma = true
		}
		if comma {
			b = append(b, ',')
		}
		if b, err = appendTime(append(b, `"expires":`...), st.Lease.Expires); err != nil {
			return nil, err
		}
		b = append(b, '}')
	}
	if b, err = appendTime(append(b, `,"peer_cache":{"fetched_at":`...), st.Peers.FetchedAt); err != nil {
		return nil, err
	}
	b = append(b, `,"peers":`...)
	if st.Peers.Peers == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, p := range st.Peers.Peers {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCachedPeer(b, &p)
		}
		b = append(b, ']')
	}
	b = append(b, `},"history":`...)
	if b, err = appendMap(b, st.History, appendHistory); err != nil {
		return nil, err
	}
	b = append(b, `,"pending":`...)
	if b, err = appendMap(b, st.Pending, appendPending); err != nil {
		return nil, err
	}
	if b, err = appendTime(append(b, `,"saved_at":`...), st.SavedAt); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

func appendCachedPeer(b []byte, p *CachedPeer) []byte {
	b = strconv.AppendInt(append(b, `{"id":`...), p.ID, 10)
	if p.Name != "" {
		b = appendString(append(b, `,"name":`...), p.Name)
	}
	b = appendString(append(b, `,"host":`...), p.Host)
	b = strconv.AppendInt(append(b, `,"port":`...), int64(p.Port), 10)
	b = appendString(append(b, `,"protocol":`...), p.Protocol)
	b = appendString(append(b, `,"network_name":`...), p.NetworkName)
	if p.SealedSecret != "" {
		b = appendString(append(b, `,"sealed_secret":`...), p.SealedSecret)
	}
	if p.Unsupported {
		b = append(b, `,"unsupported":true`...)
	}
	return append(b, '}')
}

func appendHistory(b []byte, h *History) ([]byte, error) {
	b = append(b, '{')
	// Every field before the times may be omitted: a comma goes before
	// each one but the first written.
	first := true
	key := func(b []byte, k string) []byte {
		if !first {
			b = append(b, ',')
		}
		first = false
		return append(b, k...)
	}
	if h.LastClass != "" {
		b = appendString(key(b, `"last_class":`), h.LastClass)
	}
	if h.LastRTTUS != 0 {
		b = strconv.AppendInt(key(b, `"last_rtt_us":`), h.LastRTTUS, 10)
	}
	if h.ConsecFail != 0 {
		b = strconv.AppendInt(key(b, `"consec_fail":`), int64(h.ConsecFail), 10)
	}
	if h.ConsecOK != 0 {
		b = strconv.AppendInt(key(b, `"consec_ok":`), int64(h.ConsecOK), 10)
	}
	if h.Reported != "" {
		b = appendString(key(b, `"reported":`), h.Reported)
	}
	var err error
	// omitempty does not omit a time.Time: encoding/json writes both.
	if b, err = appendTime(key(b, `"changed_at":`), h.ChangedAt); err != nil {
		return nil, err
	}
	if b, err = appendTime(append(b, `,"last_probed_at":`...), h.LastProbedAt); err != nil {
		return nil, err
	}
	if h.LastVersion != "" {
		b = appendString(append(b, `,"last_version":`...), h.LastVersion)
	}
	if h.LastPeerCount != 0 {
		b = strconv.AppendInt(append(b, `,"last_peer_count":`...), int64(h.LastPeerCount), 10)
	}
	return append(b, '}'), nil
}

func appendPending(b []byte, p *Pending) ([]byte, error) {
	b = strconv.AppendInt(append(b, `{"id":`...), p.ID, 10)
	b = appendString(append(b, `,"status":`...), p.Status)
	b = strconv.AppendInt(append(b, `,"response_time":`...), p.ResponseTime, 10)
	b = strconv.AppendInt(append(b, `,"peer_count":`...), int64(p.PeerCount), 10)
	b, err := appendTime(append(b, `,"measured_at":`...), p.MeasuredAt)
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// appendMap writes m as encoding/json does: null when nil, else its keys
// in the order of their decimal strings.
func appendMap[V any](b []byte, m map[int64]V, value func([]byte, *V) ([]byte, error)) ([]byte, error) {
	if m == nil {
		return append(b, "null"...), nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, strconv.FormatInt(k, 10))
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(append(append(b, '"'), k...), `":`...)
		id, _ := strconv.ParseInt(k, 10, 64)
		v := m[id]
		var err error
		if b, err = value(b, &v); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// appendTime writes t as time.Time's MarshalJSON does (RFC 3339 with
// nanoseconds; an error for what RFC 3339 cannot hold).
func appendTime(b []byte, t time.Time) ([]byte, error) {
	b, err := t.AppendText(append(b, '"'))
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return append(b, '"'), nil
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string as encoding/json does by default:
// <, > and & escaped for HTML, invalid UTF-8 as U+FFFD, U+2028 and U+2029
// escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(append(b, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(append(b, s[start:]...), '"')
}

// errNotFast sends a file parseState does not take to json.Unmarshal.
var errNotFast = errors.New("state: not in the form parseState reads")

// parseState reads b as appendState writes it into a zero st, whitespace
// allowed between tokens and fields in any order. Anything else — an
// unknown or repeated field, a null where appendState writes none, a
// number with a fraction or exponent, a string with invalid UTF-8 or a
// surrogate escape, a time json.Unmarshal would not take — is errNotFast,
// and st must then be thrown away.
func parseState(b []byte, st *State) error {
	p := parser{b: b}
	if !p.top(st) || p.ws() != 0 {
		return errNotFast
	}
	return nil
}

type parser struct {
	b []byte
	i int
}

// ws skips whitespace and returns the next byte, 0 at the end.
func (p *parser) ws() byte {
	for ; p.i < len(p.b); p.i++ {
		switch c := p.b[p.i]; c {
		case ' ', '\t', '\n', '\r':
		default:
			return c
		}
	}
	return 0
}

// eat consumes c, the next byte after whitespace, if it is there.
func (p *parser) eat(c byte) bool {
	if p.ws() == c {
		p.i++
		return true
	}
	return false
}

func (p *parser) literal(s string) bool {
	p.ws()
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

// fields reads an object, calling field for each key (field reads the
// value); seen keeps a field from being read twice: bit n is field n,
// which field returns (or -1 to fail).
func (p *parser) fields(field func(key []byte) int) bool {
	var seen uint32
	return p.eat('{') && p.seq('}', func() bool {
		key, ok := p.rawString()
		if !ok || !p.eat(':') {
			return false
		}
		n := field(key)
		if n < 0 || seen&(1<<n) != 0 {
			return false
		}
		seen |= 1 << n
		return true
	})
}

// seq reads what follows an opening bracket up to close: nothing, or
// items separated by commas, each read by item.
func (p *parser) seq(close byte, item func() bool) bool {
	if p.eat(close) {
		return true
	}
	for {
		if !item() {
			return false
		}
		if p.eat(close) {
			return true
		}
		if !p.eat(',') {
			return false
		}
	}
}

func (p *parser) top(st *State) bool {
	return p.fields(func(key []byte) int {
		var ok bool
		n := 0
		switch string(key) {
		case "schema":
			st.Schema, ok = p.string()
		case "version":
			n = 1
			st.Version, ok = parseInt[int](p)
		case "lease":
			n = 2
			ok = p.fields(func(key []byte) int {
				switch string(key) {
				case "owner":
					return p.field(0, p.stringInto(&st.Lease.Owner))
				case "expires":
					return p.field(1, p.time(&st.Lease.Expires))
				}
				return -1
			})
		case "peer_cache":
			n = 3
			ok = p.fields(func(key []byte) int {
				switch string(key) {
				case "fetched_at":
					return p.field(0, p.time(&st.Peers.FetchedAt))
				case "peers":
					return p.field(1, p.peers(&st.Peers.Peers))
				}
				return -1
			})
		case "history":
			n = 4
			ok = parseMap(p, &st.History, p.history)
		case "pending":
			n = 5
			ok = parseMap(p, &st.Pending, p.pending)
		case "saved_at":
			n = 6
			ok = p.time(&st.SavedAt)
		}
		return p.field(n, ok)
	})
}

// field is n when its value was read, else -1.
func (p *parser) field(n int, ok bool) int {
	if !ok {
		return -1
	}
	return n
}

func (p *parser) peers(out *[]CachedPeer) bool {
	if p.literal("null") {
		*out = nil
		return true
	}
	if !p.eat('[') {
		return false
	}
	peers := []CachedPeer{}
	ok := p.seq(']', func() bool {
		var c CachedPeer
		if !p.cachedPeer(&c) {
			return false
		}
		peers = append(peers, c)
		return true
	})
	if ok {
		*out = peers
	}
	return ok
}

func (p *parser) cachedPeer(c *CachedPeer) bool {
	return p.fields(func(key []byte) int {
		switch string(key) {
		case "id":
			return p.field(0, p.int64Into(&c.ID))
		case "name":
			return p.field(1, p.stringInto(&c.Name))
		case "host":
			return p.field(2, p.stringInto(&c.Host))
		case "port":
			return p.field(3, p.intInto(&c.Port))
		case "protocol":
			return p.field(4, p.stringInto(&c.Protocol))
		case "network_name":
			return p.field(5, p.stringInto(&c.NetworkName))
		case "sealed_secret":
			return p.field(6, p.stringInto(&c.SealedSecret))
		case "unsupported":
			return p.field(7, p.boolInto(&c.Unsupported))
		}
		return -1
	})
}

func (p *parser) history(h *History) bool {
	return p.fields(func(key []byte) int {
		switch string(key) {
		case "last_class":
			return p.field(0, p.stringInto(&h.LastClass))
		case "last_rtt_us":
			return p.field(1, p.int64Into(&h.LastRTTUS))
		case "consec_fail":
			return p.field(2, p.intInto(&h.ConsecFail))
		case "consec_ok":
			return p.field(3, p.intInto(&h.ConsecOK))
		case "reported":
			return p.field(4, p.stringInto(&h.Reported))
		case "changed_at":
			return p.field(5, p.time(&h.ChangedAt))
		case "last_probed_at":
			return p.field(6, p.time(&h.LastProbedAt))
		case "last_version":
			return p.field(7, p.stringInto(&h.LastVersion))
		case "last_peer_count":
			return p.field(8, p.intInto(&h.LastPeerCount))
		}
		return -1
	})
}

func (p *parser) pending(q *Pending) bool {
	return p.fields(func(key []byte) int {
		switch string(key) {
		case "id":
			return p.field(0, p.int64Into(&q.ID))
		case "status":
			return p.field(1, p.stringInto(&q.Status))
		case "response_time":
			return p.field(2, p.int64Into(&q.ResponseTime))
		case "peer_count":
			return p.field(3, p.intInto(&q.PeerCount))
		case "measured_at":
			return p.field(4, p.time(&q.MeasuredAt))
		}
		return -1
	})
}

// parseMap reads an object of decimal int64 keys (or null) into *m, each
// value read by value into a zero V, as json.Unmarshal into a nil map.
func parseMap[V any](p *parser, m *map[int64]V, value func(*V) bool) bool {
	if p.literal("null") {
		*m = nil
		return true
	}
	if !p.eat('{') {
		return false
	}
	out := map[int64]V{}
	ok := p.seq('}', func() bool {
		key, ok := p.rawString()
		if !ok || !p.eat(':') {
			return false
		}
		id, err := strconv.ParseInt(string(key), 10, 64)
		if _, dup := out[id]; err != nil || dup {
			return false
		}
		var v V
		if !value(&v) {
			return false
		}
		out[id] = v
		return true
	})
	if ok {
		*m = out
	}
	return ok
}

// rawString reads a string with no escapes and no control characters and
// returns its bytes, which alias b.
func (p *parser) rawString() ([]byte, bool) {
	if p.ws() != '"' {
		return nil, false
	}
	start := p.i + 1
	for j := start; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			p.i = j + 1
			return p.b[start:j], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// string reads a string of valid UTF-8, unescaping what appendString
// escapes (and \/); a surrogate escape is not taken.
func (p *parser) string() (string, bool) {
	if p.ws() != '"' {
		return "", false
	}
	p.i++
	var out []byte
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			seg := p.b[start:p.i]
			p.i++
			if !utf8.Valid(seg) {
				return "", false
			}
			if out == nil {
				return string(seg), true
			}
			return string(append(out, seg...)), true
		case c < 0x20:
			return "", false
		case c != '\\':
			p.i++
			continue
		}
		seg := p.b[start:p.i]
		if !utf8.Valid(seg) || p.i+1 >= len(p.b) {
			return "", false
		}
		out = append(out, seg...)
		switch e := p.b[p.i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if p.i+6 > len(p.b) {
				return "", false
			}
			r, err := strconv.ParseUint(string(p.b[p.i+2:p.i+6]), 16, 16)
			if err != nil || utf16IsSurrogate(rune(r)) {
				return "", false
			}
			out = utf8.AppendRune(out, rune(r))
			p.i += 4
		default:
			return "", false
		}
		p.i += 2
		start = p.i
	}
	return "", false
}

func utf16IsSurrogate(r rune) bool { return 0xd800 <= r && r < 0xe000 }

func (p *parser) stringInto(s *string) bool {
	v, ok := p.string()
	*s = v
	return ok
}

// parseInt reads an integer as json.Unmarshal takes it into T: no
// fraction or exponent, within T's range.
func parseInt[T int | int64](p *parser) (T, bool) {
	p.ws()
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
	}
	if p.i == digits || p.b[digits] == '0' && p.i-digits > 1 {
		return 0, false
	}
	if p.i < len(p.b) {
		if c := p.b[p.i]; c == '.' || c == 'e' || c == 'E' {
			return 0, false
		}
	}
	var zero T
	bits := 64
	if any(zero) == any(int(0)) {
		bits = strconv.IntSize
	}
	n, err := strconv.ParseInt(string(p.b[start:p.i]), 10, bits)
	return T(n), err == nil
}

func (p *parser) intInto(n *int) bool {
	v, ok := parseInt[int](p)
	*n = v
	return ok
}

func (p *parser) int64Into(n *int64) bool {
	v, ok := parseInt[int64](p)
	*n = v
	return ok
}

func (p *parser) boolInto(v *bool) bool {
	switch {
	case p.literal("true"):
		*v = true
	case p.literal("false"):
		*v = false
	default:
		return false
	}
	return true
}

// time reads a time as time.Time's UnmarshalJSON does (RFC 3339, strictly).
func (p *parser) time(t *time.Time) bool {
	raw, ok := p.rawString()
	return ok && t.UnmarshalText(raw) == nil
}
