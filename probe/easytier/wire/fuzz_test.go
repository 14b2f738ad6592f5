package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// capture is one frame of a real exchange in testdata/real_<transport>.txt.
type capture struct {
	transport string
	sent      bool
	frame     []byte
}

// loadCaptures reads every captured exchange with a real EasyTier node.
func loadCaptures(t testing.TB) []capture {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join("testdata", "real_*.txt"))
	if len(files) == 0 {
		t.Fatal("no captures in testdata (regenerate with go test ./probe/easytier -run Conformance -capture)")
	}
	var out []capture
	for _, f := range files {
		tr := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "real_"), ".txt")
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if line == "" || line[0] == '#' {
				continue
			}
			dir, hx, ok := strings.Cut(line, " ")
			b, err := hex.DecodeString(hx)
			if !ok || err != nil {
				t.Fatalf("%s: bad line %q", f, line)
			}
			out = append(out, capture{tr, dir == ">", b})
		}
		fh.Close()
	}
	return out
}

// packetOf strips the transport framing from a captured frame.
func packetOf(c capture) ([]byte, error) {
	switch c.transport {
	case "tcp":
		if len(c.frame) < 4 {
			return nil, ErrShort
		}
		n, err := TCPFrameLen([4]byte(c.frame[:4]))
		if err != nil {
			return nil, err
		}
		if len(c.frame) != 4+n {
			return nil, ErrShort
		}
		return c.frame[4:], nil
	case "udp":
		_, _, body, err := ParseUDP(c.frame)
		return body, err
	}
	return c.frame, nil
}

// TestRealCaptures_Golden checks every frame of the real exchanges: what we
// sent passes the outbound guard and re-encodes byte for byte, and what the
// node sent decodes.
func TestRealCaptures_Golden(t *testing.T) {
	caps := loadCaptures(t)
	seen := map[string]map[PacketType]int{}
	for i, c := range caps {
		pkt, err := packetOf(c)
		if err != nil {
			t.Fatalf("capture %d (%s): %v", i, c.transport, err)
		}
		h, payload, err := ParsePacket(pkt)
		if err != nil {
			t.Fatalf("capture %d: %v", i, err)
		}
		dir := map[bool]string{true: "sent", false: "recv"}[c.sent]
		if seen[c.transport+dir] == nil {
			seen[c.transport+dir] = map[PacketType]int{}
		}
		seen[c.transport+dir][h.Type]++
		if c.sent {
			if err := CheckOutbound(pkt); err != nil {
				t.Errorf("capture %d: we sent a packet outside the allowed set: %v", i, err)
			}
			if h.Type == TypeHandShake {
				hs, err := ParseHandshake(payload)
				if err != nil {
					t.Fatal(err)
				}
				again := AppendPacket(nil, h.From, 0, TypeHandShake, AppendHandshake(nil, hs.PeerID, hs.NetworkName, [32]byte(hs.Digest)))
				if !bytes.Equal(again, pkt) {
					t.Errorf("capture %d: handshake re-encodes as %x, captured %x", i, again, pkt)
				}
			}
			continue
		}
		switch h.Type {
		case TypeHandShake:
			if _, err := ParseHandshake(payload); err != nil {
				t.Errorf("capture %d: node handshake: %v", i, err)
			}
		case TypePing, TypePong:
			if _, err := PingSeq(payload); err != nil {
				t.Errorf("capture %d: %v", i, err)
			}
		case TypeRPCReq, TypeRPCResp:
			if h.Flags&FlagEncrypted == 0 {
				if _, err := ParseRPCPacket(payload); err != nil {
					t.Errorf("capture %d: %v", i, err)
				}
			} else if len(payload) < aeadTailLen {
				t.Errorf("capture %d: sealed payload of %d bytes", i, len(payload))
			}
		}
	}
	for _, tr := range []string{"tcp", "udp", "ws", "wss"} {
		s, r := seen[tr+"sent"], seen[tr+"recv"]
		if s[TypeHandShake] != 1 || s[TypePing] == 0 || s[TypeRPCReq] != 1 || r[TypeHandShake] != 1 || r[TypePong] == 0 || r[TypeRPCReq] == 0 {
			t.Errorf("%s capture lacks a full exchange: sent %v, received %v", tr, s, r)
		}
	}
}

// seedFrames adds every captured packet and the protocol vectors.
func seedFrames(f *testing.F) {
	for _, c := range loadCaptures(f) {
		if pkt, err := packetOf(c); err == nil {
			f.Add(pkt)
		}
	}
	for _, h := range []string{hsTCP[8:], syncReqPacket, syncRespPacket, routePush} {
		b, _ := hex.DecodeString(h)
		f.Add(b)
	}
}

func FuzzParsePacket(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, payload, err := ParsePacket(b)
		if err != nil {
			return
		}
		_, _ = PingSeq(payload)
		_, _ = ParseHandshake(payload)
		_, _ = ParseRPCPacket(payload)
		_ = CheckOutbound(b)
		if h.Type == TypePing {
			if pong, err := AppendPongFor(nil, b); err == nil {
				if err := CheckOutbound(pong); err != nil && h.Flags == 0 && h.Forward == 1 {
					t.Fatalf("AppendPongFor made an unsafe pong: %v", err)
				}
			}
		}
	})
}

func FuzzTransportFrames(f *testing.F) {
	for _, c := range loadCaptures(f) {
		f.Add(c.frame)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= 4 {
			if n, err := TCPFrameLen([4]byte(b[:4])); err == nil && (n < HeaderLen || n > MaxTCPFrame) {
				t.Fatalf("TCPFrameLen accepted %d", n)
			}
		}
		id, typ, body, err := ParseUDP(b)
		if err == nil {
			again := AppendUDP(nil, id, typ, body)
			if !bytes.Equal(again[:5], b[:5]) || !bytes.Equal(again[6:], b[6:]) { // byte 5 is padding
				t.Fatalf("udp round trip: %x -> %x", b, again)
			}
		}
		_ = IsSack(b, 1, 2)
	})
}

func FuzzHandshake(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		hs, err := ParseHandshake(b)
		if err != nil {
			return
		}
		enc := AppendHandshake(nil, hs.PeerID, hs.NetworkName, [32]byte(hs.Digest))
		back, err := ParseHandshake(enc)
		if err != nil || back.PeerID != hs.PeerID || back.NetworkName != hs.NetworkName || !bytes.Equal(back.Digest, hs.Digest) {
			t.Fatalf("handshake round trip: %+v -> %+v (%v)", hs, back, err)
		}
		if err := CheckOutbound(AppendPacket(nil, hs.PeerID, 0, TypeHandShake, enc)); err != nil {
			t.Fatalf("our handshake is refused by the guard: %v", err)
		}
	})
}

func FuzzRPC(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseRPCPacket(b)
		if err != nil {
			return
		}
		_, _ = RPCRequestInner(p.Body)
		_, _, _ = RPCResponseResult(p.Body)
		var m Merger
		_, _, _ = m.Add(p)
		if !p.Descriptor.IsRouteSync() {
			return
		}
		// Our answer to whatever the node sent must be safe and decodable.
		resp := AppendRouteSyncResponse(nil, 7, 9, p, 42)
		if err := CheckOutbound(AppendPacket(nil, 7, 9, TypeRPCResp, resp)); err != nil {
			t.Fatalf("our response is refused by the guard: %v", err)
		}
		back, err := ParseRPCPacket(resp)
		if err != nil || back.TransactionID != p.TransactionID || back.TraceID != p.TraceID || back.Descriptor != p.Descriptor {
			t.Fatalf("response round trip: %+v -> %+v (%v)", p, back, err)
		}
	})
}

func FuzzRouteSync(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := ParseRouteSync(b)
		if err != nil {
			return
		}
		total, withPeers := NetworkCount(rs.Foreign, rs.PeerID)
		if withPeers > total || total > len(rs.Foreign) {
			t.Fatalf("NetworkCount = %d, %d of %d entries", total, withPeers, len(rs.Foreign))
		}
	})
}

func FuzzOpen(f *testing.F) {
	f.Add([]byte("short"), "s")
	f.Add(bytes.Repeat([]byte{1}, 60), "sample-secret")
	k := NewKeys("sample-secret")
	sealed, _ := k.Seal(CipherAES128GCM, []byte("hello easytier"), make([]byte, 12))
	f.Add(sealed, "sample-secret")
	f.Fuzz(func(t *testing.T, payload []byte, secret string) {
		pt, name, err := NewKeys(secret).Open(payload, func(b []byte) bool { _, err := ParseRPCPacket(b); return err == nil && len(b) > 0 })
		if err == nil && name == "" {
			t.Fatalf("opened %d bytes without naming a cipher: %x", len(payload), pt)
		}
	})
}

func FuzzEncodeRoundTrip(f *testing.F) {
	f.Add(uint32(1234567890), uint32(195948557), int64(-5), "sample-net", uint64(0x0123456789abcdef), uint32(7))
	f.Fuzz(func(t *testing.T, from, to uint32, tx int64, network string, session uint64, seq uint32) {
		req := AppendPacket(nil, from, to, TypeRPCReq, AppendRouteSyncRequest(nil, from, to, tx, network, session))
		if err := CheckOutbound(req); err != nil {
			t.Fatalf("route sync request refused: %v", err)
		}
		_, payload, _ := ParsePacket(req)
		p, err := ParseRPCPacket(payload)
		if err != nil || p.TransactionID != tx || p.Descriptor.Domain != network || !p.IsRequest || p.TotalPieces != 1 {
			t.Fatalf("request round trip: %+v, %v", p, err)
		}
		inner, _ := RPCRequestInner(p.Body)
		rs, err := ParseRouteSync(inner)
		if err != nil || rs.PeerID != from || rs.HasPeers || rs.HasForeign {
			t.Fatalf("sync request decodes as %+v, %v", rs, err)
		}
		ping := AppendPacket(nil, from, to, TypePing, PingPayload(seq))
		if err := CheckOutbound(ping); err != nil {
			t.Fatal(err)
		}
		pong, err := AppendPongFor(nil, ping)
		if err != nil || CheckOutbound(pong) != nil || binary.LittleEndian.Uint32(pong[HeaderLen:]) != seq {
			t.Fatalf("pong for seq %d: %x, %v", seq, pong, err)
		}
	})
}
