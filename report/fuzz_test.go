package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// addPeerFiles seeds f with the peer lists in testdata.
func addPeerFiles(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "peers_*.json"))
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
}

// FuzzParsePeers feeds arbitrary bodies to the peer-list decoder: it must
// never panic, and every peer it keeps must be probe-able.
func FuzzParsePeers(f *testing.F) {
	addPeerFiles(f)
	f.Add([]byte(`{"code":200,"data":{"peers":[{"id":1e300,"host":"::"}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var env envelope
		if err := json.Unmarshal(body, &env); err != nil {
			return
		}
		peers, _, err := parsePeers(env.Data)
		if err != nil {
			return
		}
		seen := map[int64]bool{}
		for _, p := range peers {
			if seen[p.ID] {
				t.Fatalf("duplicate id %d kept", p.ID)
			}
			seen[p.ID] = true
			if !p.Unsupported && (p.Port < 1 || p.Port > 65535) {
				t.Fatalf("peer %d kept with port %d", p.ID, p.Port)
			}
			if checkHost(p.Host) != nil {
				t.Fatalf("peer %d kept with host %q", p.ID, p.Host)
			}
		}
	})
}

// The one-decode path of parsePeers must keep, skip and word exactly what
// the entry-by-entry path does.
func FuzzParsePeers_OneDecodeMatchesEach(f *testing.F) {
	addPeerFiles(f)
	for _, s := range []string{
		`{"data":{"peers":[{"id":1,"host":"a","port":11010},{"id":1,"host":"b"},{"id":"2","host":"c"},{"id":null,"host":"d"}]}}`,
		`{"data":{"peers":[{"id":3,"host":"a","port":65536},{"id":4,"host":"a","port":1.5},{"id":5,"host":"a\u00e9","name":"x\ty"},null]}}`,
		`{"data":{"peers":[{"id":6,"host":"a"},7,"eight",[9]]}}`,
		`{"data":{"peers":{"id":1}}}`,
		`{"data":{"peers":[{"id":12345678901234567890,"host":"a"},{"id":-3,"host":"b","port":-1},{"id":10,"host":"b","port":007}]}}`,
		"{\"data\":{\"peers\":[{\"id\":11,\"host\":\"a\",\"name\":\"\xff\xfe\"}]}}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var env envelope
		if err := json.Unmarshal(body, &env); err != nil || len(env.Data) == 0 || string(env.Data) == "null" {
			return // no list: parsePeers answers before either path
		}
		p1, w1, err1 := parsePeers(env.Data)
		p2, w2, err2 := parsePeersEach(env.Data)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("errors differ: %v / %v", err1, err2)
		}
		if !reflect.DeepEqual(p1, p2) || !reflect.DeepEqual(w1, w2) {
			t.Fatalf("one decode: %+v %q\nentry by entry: %+v %q", p1, w1, p2, w2)
		}
	})
}

// plainString and plainUint, where they accept a value of a valid
// document, read it as encoding/json does.
func FuzzPlainValues_MatchEncodingJSON(f *testing.F) {
	for _, s := range []string{`"abc"`, `"a\"b"`, `"\u00e9"`, "\"\xff\"", `"é"`, `123`, `0`, `-1`, `1.5`, `1e3`, `99999`, `123456789012345678`, `null`, `""`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return
		}
		if s, ok := plainString(raw); ok {
			var want string
			if err := json.Unmarshal(raw, &want); err != nil || s != want {
				t.Fatalf("plainString(%q) = %q; encoding/json: %q, %v", raw, s, want, err)
			}
		}
		if n, ok := plainUint(raw, 18); ok {
			var want int64
			if err := json.Unmarshal(raw, &want); err != nil || n != want {
				t.Fatalf("plainUint(%q) = %d; encoding/json: %d, %v", raw, n, want, err)
			}
		}
	})
}

// fastSeeds are bodies for the fast-path fuzz targets: the testdata
// lists and shapes each path must leave to encoding/json or read alike.
func fastSeeds(f *testing.F) {
	addPeerFiles(f)
	for _, s := range []string{
		`{"code":200,"message":"Success"}`,
		` { "message" : "x" , "code" : -0 , "data" : null } `,
		`{"code":200,"Code":500,"data":{"peers":[{"id":1,"ID":2,"host":"a"}]}}`,
		`{"code":2e2,"message":"a\u00e9","data":{"peers":null,"x":[1,{"y":"\ud800"}]}}`,
		`{"code":200,"data":{"peers":[{"id":1,"id":2}],"peers":[]}}`,
		`{"code":200,"data":{"peers":[{"id":1,"host":"a","port":11010,"extra":{"a":[true,false,null,-1.5e+3]}}]}}`,
		`{"data":{"peers":[null,{"id":1}]}}`,
		"{\"message\":\"\xff\",\"data\":{\"peers\":[{\"n\\u0061me\":\"x\"}]}}",
	} {
		f.Add([]byte(s))
	}
}

// FuzzFastEnvelope: what fastEnvelope takes, json.Unmarshal reads alike.
func FuzzFastEnvelope(f *testing.F) {
	fastSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, ok := fastEnvelope(raw)
		if !ok {
			return
		}
		var want envelope
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatalf("fastEnvelope took what json.Unmarshal refuses (%v): %q", err, raw)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nfast %+v\njson %+v", raw, got, want)
		}
	})
}

// FuzzFastPeers: what fastPeers takes, json.Unmarshal reads alike, and
// parsePeers ends as it does through encoding/json.
func FuzzFastPeers(f *testing.F) {
	fastSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		var env envelope
		if json.Unmarshal(body, &env) != nil {
			env.Data = body // the fuzzer's bytes as data themselves
		}
		got, ok := fastPeers(env.Data)
		if !ok {
			return
		}
		var want struct {
			Peers []wirePeer `json:"peers"`
		}
		if err := json.Unmarshal(env.Data, &want); err != nil {
			t.Fatalf("fastPeers took what json.Unmarshal refuses (%v): %q", err, env.Data)
		}
		if !reflect.DeepEqual(got, want.Peers) {
			t.Fatalf("%q:\nfast %+v\njson %+v", env.Data, got, want.Peers)
		}
		p1, w1, err1 := parsePeers(env.Data)
		p2, w2, err2 := parsePeersJSON(env.Data)
		if (err1 == nil) != (err2 == nil) || !reflect.DeepEqual(p1, p2) || !reflect.DeepEqual(w1, w2) {
			t.Fatalf("parsePeers: %+v %q %v\nthrough json: %+v %q %v", p1, w1, err1, p2, w2, err2)
		}
	})
}

// The fast paths must take the usual shapes (or FuzzFast* test nothing)
// and leave the unusual ones to encoding/json.
func TestFastPaths_TakeTheUsualShapeOnly(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("testdata", "peers_basic.json"))
	if err != nil {
		t.Fatal(err)
	}
	env, ok := fastEnvelope(body)
	if !ok || env.Code == nil || *env.Code != 200 {
		t.Fatalf("fastEnvelope(peers_basic.json) = %+v, %v", env, ok)
	}
	if ps, ok := fastPeers(env.Data); !ok || len(ps) == 0 {
		t.Fatalf("fastPeers(peers_basic.json data) = %d peers, %v", len(ps), ok)
	}
	for _, s := range []string{`{"code":200,"message":"Success"}`, "{\n \"code\": 200,\n \"data\": {\"peers\": []}\n}\n"} {
		if _, ok := fastEnvelope([]byte(s)); !ok {
			t.Errorf("fastEnvelope refused %s", s)
		}
	}
	for _, s := range []string{`{"Code":200}`, `{"code":200,"code":200}`, `{"code":2e2}`, `{"message":"a\nb"}`, `{"c\u006fde":1}`, `{"code":200}x`} {
		if _, ok := fastEnvelope([]byte(s)); ok {
			t.Errorf("fastEnvelope took %s", s)
		}
	}
	for _, s := range []string{`{"peers":[null]}`, `{"peers":[{"ID":1}]}`, `{"peers":[{"id":1,"id":1}]}`, `{"Peers":[]}`, `{"peers":[],"peers":[]}`, `{"peers":{}}`} {
		if _, ok := fastPeers([]byte(s)); ok {
			t.Errorf("fastPeers took %s", s)
		}
	}
}

// FuzzReadPlainAnswer: whatever readPlainAnswer reads, http.ReadResponse
// reads alike (status, length, close, body, and what follows); what it
// leaves, it leaves unread.
func FuzzReadPlainAnswer(f *testing.F) {
	for _, a := range []string{okAnswer, closeAnswer, chunkedAnswer, http10Answer, hintsAnswer,
		"HTTP/1.1 201 Created\r\ncontent-length: 2\r\nX: y\r\n\r\n{}HTTP/1.1",
		"HTTP/1.1 200\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"} {
		f.Add([]byte(a))
	}
	req := &http.Request{Method: http.MethodPut}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 4096)
		got, err := readPlainAnswer(br, req)
		if err != nil {
			if len(in) > 0 {
				t.Fatalf("error %v with %d bytes to read", err, len(in))
			}
			return
		}
		if got == nil {
			if br.Buffered() != min(len(in), 4096) {
				t.Fatalf("left to net/http with %d bytes consumed", min(len(in), 4096)-br.Buffered())
			}
			return
		}
		want, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(in)), req)
		if err != nil {
			t.Fatalf("read as %d %q, net/http: %v", got.StatusCode, got.Status, err)
		}
		gotBody, _ := io.ReadAll(got.Body)
		wantBody, err := io.ReadAll(want.Body)
		if err != nil {
			t.Fatalf("net/http's body: %v", err)
		}
		if got.StatusCode != want.StatusCode || got.Status != want.Status || got.ContentLength != want.ContentLength ||
			got.Close != want.Close || !bytes.Equal(gotBody, wantBody) {
			t.Fatalf("read %d %q len %d close %v body %q; net/http %d %q len %d close %v body %q",
				got.StatusCode, got.Status, got.ContentLength, got.Close, gotBody,
				want.StatusCode, want.Status, want.ContentLength, want.Close, wantBody)
		}
		rest, _ := io.ReadAll(br)
		if consumed := len(in) - len(rest); !bytes.HasSuffix(in, rest) || consumed <= 0 {
			t.Fatalf("consumed %d of %d", consumed, len(in))
		}
	})
}
