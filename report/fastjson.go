package report

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The peer list is on the path to the first probe, and encoding/json went
// through it three times (the envelope, then the list, then each field
// into a RawMessage of its own): ~6 ms for 1,000 peers here, ~60 for
// 10,000. fastEnvelope and fastPeers read the usual shape of both in one
// pass, their values left in place in the body, and give up on anything
// unusual — a key in another case or with escapes, a repeated one, a
// peer that is not an object, nesting past maxDepth — which encoding/json
// then reads as before. What they take, json.Unmarshal reads alike
// (FuzzFastEnvelope, FuzzFastPeers); every value they skip, they check
// as its scanner does.

// maxDepth bounds the nesting a skipped value may have here (encoding/json
// allows 10,000; deeper than this goes to it).
const maxDepth = 200

type scanner struct {
	b     []byte
	i     int
	depth int
}

// ws skips whitespace and returns the next byte, 0 at the end.
func (s *scanner) ws() byte {
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; c {
		case ' ', '\t', '\n', '\r':
		default:
			return c
		}
	}
	return 0
}

func (s *scanner) eat(c byte) bool {
	if s.ws() == c {
		s.i++
		return true
	}
	return false
}

// key reads an object key and the colon after it; a key with escapes or
// bytes outside ASCII is not taken (encoding/json would unescape and fold
// it before matching a field).
func (s *scanner) key() ([]byte, bool) {
	if s.ws() != '"' {
		return nil, false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start:j], s.eat(':')
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			return nil, false
		}
	}
	return nil, false
}

// value skips one JSON value, checking it as encoding/json's scanner
// does, and returns its bytes.
func (s *scanner) value() ([]byte, bool) {
	c := s.ws()
	start := s.i
	var ok bool
	switch {
	case c == '"':
		ok = s.str()
	case c == '-' || '0' <= c && c <= '9':
		ok = s.number()
	case c == 't':
		ok = s.lit("true")
	case c == 'f':
		ok = s.lit("false")
	case c == 'n':
		ok = s.lit("null")
	case c == '[' || c == '{':
		if s.depth++; s.depth > maxDepth {
			return nil, false
		}
		s.i++
		if c == '[' {
			ok = s.array()
		} else {
			ok = s.object()
		}
		s.depth--
	}
	if !ok {
		return nil, false
	}
	return s.b[start:s.i], true
}

// seq reads what follows an opening bracket up to close: nothing, or
// items separated by commas, each read by item.
func (s *scanner) seq(close byte, item func() bool) bool {
	if s.eat(close) {
		return true
	}
	for {
		if !item() {
			return false
		}
		if s.eat(close) {
			return true
		}
		if !s.eat(',') {
			return false
		}
	}
}

func (s *scanner) array() bool {
	return s.seq(']', func() bool {
		_, ok := s.value()
		return ok
	})
}

func (s *scanner) object() bool {
	return s.seq('}', func() bool {
		if s.ws() != '"' || !s.str() || !s.eat(':') {
			return false
		}
		_, ok := s.value()
		return ok
	})
}

func (s *scanner) lit(l string) bool {
	if len(s.b)-s.i >= len(l) && string(s.b[s.i:s.i+len(l)]) == l {
		s.i += len(l)
		return true
	}
	return false
}

// str skips a string at s.i (its opening quote).
func (s *scanner) str() bool {
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if j+1 >= len(s.b) {
				return false
			}
			switch s.b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if j+6 > len(s.b) {
					return false
				}
				for _, h := range s.b[j+2 : j+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				j += 5
			default:
				return false
			}
		}
	}
	return false
}

// number skips -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? at s.i.
func (s *scanner) number() bool {
	b, i := s.b, s.i
	digits := func() bool {
		start := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i > start
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	s.i = i
	return true
}

// end says whether only whitespace is left.
func (s *scanner) end() bool { return s.ws() == 0 && s.i == len(s.b) }

// folds says whether key is one of names in another case, which
// encoding/json would match.
func folds(key []byte, names ...string) bool {
	for _, n := range names {
		if strings.EqualFold(string(key), n) {
			return true
		}
	}
	return false
}

// members reads an object, calling member for each key; member reads the
// value and says whether to go on.
func (s *scanner) members(member func(key []byte) bool) bool {
	return s.eat('{') && s.seq('}', func() bool {
		k, ok := s.key()
		return ok && member(k)
	})
}

// once says whether field i is seen for the first time, and marks it.
func once(seen []bool, i int) bool {
	if seen[i] {
		return false
	}
	seen[i] = true
	return true
}

// fastEnvelope reads a response envelope as json.Unmarshal into an
// envelope would, its data left in place in raw.
func fastEnvelope(raw []byte) (env envelope, ok bool) {
	s := scanner{b: raw}
	seen := make([]bool, 3)
	ok = s.members(func(k []byte) bool {
		v, ok := s.value()
		if !ok {
			return false
		}
		switch string(k) {
		case "code":
			if !once(seen, 0) {
				return false
			}
			if string(v) != "null" {
				n, err := strconv.ParseInt(string(v), 10, strconv.IntSize)
				if err != nil {
					return false
				}
				c := int(n)
				env.Code = &c
			}
		case "message":
			if !once(seen, 1) {
				return false
			}
			if string(v) != "null" {
				if v[0] != '"' {
					return false
				}
				body := v[1 : len(v)-1]
				if bytes.IndexByte(body, '\\') >= 0 || !utf8.Valid(body) {
					return false
				}
				env.Message = string(body)
			}
		case "data":
			if !once(seen, 2) {
				return false
			}
			env.Data = json.RawMessage(v)
		default:
			return !folds(k, "code", "message", "data")
		}
		return true
	})
	return env, ok && s.end()
}

// fastPeers reads the data of GET /peers as json.Unmarshal into
// struct{ Peers []wirePeer } would, each field left in place in data.
func fastPeers(data []byte) (peers []wirePeer, ok bool) {
	s := scanner{b: data}
	seen := make([]bool, 1)
	ok = s.members(func(k []byte) bool {
		switch {
		case string(k) == "peers":
			if !once(seen, 0) {
				return false
			}
			if s.ws() == 'n' {
				peers = nil
				return s.lit("null")
			}
			if !s.eat('[') {
				return false
			}
			peers = []wirePeer{}
			return s.seq(']', func() bool {
				w, ok := s.peer()
				if ok {
					peers = append(peers, w)
				}
				return ok
			})
		case folds(k, "peers"):
			return false
		}
		_, ok := s.value()
		return ok
	})
	if !ok || !s.end() {
		return nil, false
	}
	return peers, true
}

// peer reads one entry of the list, which must be an object.
func (s *scanner) peer() (w wirePeer, ok bool) {
	fields := [...]struct {
		name string
		v    *json.RawMessage
	}{{"id", &w.ID}, {"name", &w.Name}, {"host", &w.Host}, {"port", &w.Port}, {"protocol", &w.Protocol},
		{"network_name", &w.NetworkName}, {"network_secret", &w.NetworkSecret}, {"public_ip", &w.PublicIP}}
	ok = s.members(func(k []byte) bool {
		v, ok := s.value()
		if !ok {
			return false
		}
		for _, f := range fields {
			if string(k) == f.name {
				if *f.v != nil {
					return false // repeated
				}
				*f.v = v
				return true
			}
			if strings.EqualFold(string(k), f.name) {
				return false
			}
		}
		return true
	})
	return w, ok
}
