package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
)

// Vectors from the protocol notes, section 13.
const (
	proberID = 1234567890
	nodeID   = 195948557
	session  = 0x0123456789abcdef
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSipHash13_Vectors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "d1fba762150c532c"},
		{"a", "407448d2b89b1813"},
		{"abcdefgh", "3f7b849c0b8e35ea"},
		{"sample-netsample-secret", "ec0e76ee9baaf1e7"},
	} {
		if got := fmt.Sprintf("%016x", sipHash13([]byte(tc.in))); got != tc.want {
			t.Errorf("sipHash13(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestDigest_Vectors(t *testing.T) {
	for _, tc := range []struct{ name, secret, want string }{
		{"default", "", "02e2bcd8739ae03985d61303fbec09210289c243231b1dcaa5bbb1f191f9b993"},
		{"sample-net", "sample-secret", "ec0e76ee9baaf1e74eb4f9c95186b03a31236937b3d90d7fb619664aa630562b"},
		{"easytier", "easytier", "94f31c11f7dea19ef0f578bf57d614bad27ff4dafafa0bb374a4c088335a357f"},
	} {
		d := Digest(tc.name, tc.secret)
		if got := hex.EncodeToString(d[:]); got != tc.want {
			t.Errorf("Digest(%q, %q) = %s, want %s", tc.name, tc.secret, got, tc.want)
		}
	}
}

func TestKeys_Vectors(t *testing.T) {
	for _, tc := range []struct{ secret, k128, k256 string }{
		{"", "d1fba762150c532c4cf426633e76377d", "a2c096544363634f2b0a4489cb8496d919d9f290fe8349cad32bc1da83778cb1"},
		{"sample-secret", "a579806163916b5bc6445a6deea392d5", "13016f31bf71e5c60deb87b7fee700d2ca8eeea3a61c7f818c2548bda99f6bef"},
	} {
		k1, k2 := Key128(tc.secret), Key256(tc.secret)
		if got := hex.EncodeToString(k1[:]); got != tc.k128 {
			t.Errorf("Key128(%q) = %s, want %s", tc.secret, got, tc.k128)
		}
		if got := hex.EncodeToString(k2[:]); got != tc.k256 {
			t.Errorf("Key256(%q) = %s, want %s", tc.secret, got, tc.k256)
		}
	}
}

const hsTCP = "4c000000d202964900000000020001003c00000008e1cb868f0d10d285d8cc0418012a0a73616d706c652d6e65743220ec0e76ee9baaf1e74eb4f9c95186b03a31236937b3d90d7fb619664aa630562b"

func TestHandshake_Frames(t *testing.T) {
	hs := AppendHandshake(nil, proberID, "sample-net", Digest("sample-net", "sample-secret"))
	pkt := AppendPacket(nil, proberID, 0, TypeHandShake, hs)
	if got := hex.EncodeToString(AppendTCPFrame(nil, pkt)); got != hsTCP {
		t.Errorf("tcp frame = %s, want %s", got, hsTCP)
	}
	udp := hex.EncodeToString(AppendUDP(nil, 0x11223344, UDPData, pkt))
	if want := "4433221103004c00" + hsTCP[8:]; udp != want {
		t.Errorf("udp datagram = %s, want %s", udp, want)
	}
	if got, want := hex.EncodeToString(AppendUDPSyn(nil, 0x11223344, 0x0102030405060708)), "44332211010008000807060504030201"; got != want {
		t.Errorf("syn = %s, want %s", got, want)
	}
	if !IsSack(unhex(t, "44332211020008000807060504030201"), 0x11223344, 0x0102030405060708) {
		t.Error("IsSack(vector) = false, want true")
	}
	h, payload, err := ParsePacket(pkt)
	if err != nil || h.Type != TypeHandShake || h.From != proberID {
		t.Fatalf("ParsePacket = %+v, %v", h, err)
	}
	got, err := ParseHandshake(payload)
	if err != nil {
		t.Fatal(err)
	}
	if got.NetworkName != "sample-net" || got.PeerID != proberID || got.Magic != HandshakeMagic || got.Version != 1 {
		t.Errorf("ParseHandshake = %+v", got)
	}
}

func TestPing_PongEcho(t *testing.T) {
	ping := AppendPacket(nil, proberID, nodeID, TypePing, PingPayload(7))
	if got, want := hex.EncodeToString(AppendTCPFrame(nil, ping)), "14000000d20296490df0ad0b040001000400000007000000"; got != want {
		t.Errorf("ping = %s, want %s", got, want)
	}
	pong, err := AppendPongFor(nil, ping)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(pong), "d20296490df0ad0b050001000400000007000000"; got != want {
		t.Errorf("pong = %s, want %s", got, want)
	}
	// AppendPongFor writes after what dst holds and leaves the ping alone.
	withPrefix, err := AppendPongFor([]byte{0xee}, ping)
	if err != nil || hex.EncodeToString(withPrefix) != "ee"+hex.EncodeToString(pong) || ping[8] != byte(TypePing) {
		t.Errorf("AppendPongFor(ee, ping) = %x, %v; ping type now %d", withPrefix, err, ping[8])
	}
	short := AppendPacket(nil, nodeID, proberID, TypePing, []byte{1, 2})
	if _, err := AppendPongFor(nil, short); !errors.Is(err, ErrUnsafeMessage) {
		t.Errorf("AppendPongFor(short ping) err = %v, want ErrUnsafeMessage", err)
	}
}

const (
	syncReqPacket  = "08d285d8cc04108de0b75d1801222a0a0a73616d706c652d6e6574120c4f737066526f7574655270631a0c4f737066526f75746552706320012a17121208d285d8cc0410ef9bafcdf8acd19101180118b81730013801520408011001"
	syncRespPacket = "08d285d8cc04108de0b75d18fbffffffffffffffff01222a0a0a73616d706c652d6e6574120c4f737066526f7574655270631a0c4f737066526f75746552706320012a0e0a0c080110ef9bafcdf8acd191013801520408011001"
)

func TestRouteSync_Encode(t *testing.T) {
	req := AppendRouteSyncRequest(nil, proberID, nodeID, 1, "sample-net", session)
	if got := hex.EncodeToString(req); got != syncReqPacket {
		t.Errorf("request = %s, want %s", got, syncReqPacket)
	}
	p := RPCPacket{TransactionID: -5, Descriptor: Descriptor{Domain: "sample-net", Proto: RouteProto, Service: RouteService, Method: 1}}
	resp := AppendRouteSyncResponse(nil, proberID, nodeID, p, session)
	if got := hex.EncodeToString(resp); got != syncRespPacket {
		t.Errorf("response = %s, want %s", got, syncRespPacket)
	}
	for _, pkt := range [][]byte{
		AppendPacket(nil, proberID, nodeID, TypeRPCReq, req),
		AppendPacket(nil, proberID, nodeID, TypeRPCResp, resp),
	} {
		if err := CheckOutbound(pkt); err != nil {
			t.Errorf("CheckOutbound(route sync) = %v, want nil", err)
		}
	}
}

func TestParseRPCPacket_Vector(t *testing.T) {
	p, err := ParseRPCPacket(unhex(t, syncRespPacket))
	if err != nil {
		t.Fatal(err)
	}
	if p.TransactionID != -5 || p.FromPeer != proberID || p.ToPeer != nodeID || !p.Descriptor.IsRouteSync() || p.TotalPieces != 1 || p.IsRequest {
		t.Errorf("ParseRPCPacket = %+v", p)
	}
	resp, hasErr, err := RPCResponseResult(p.Body)
	if err != nil || hasErr || hex.EncodeToString(resp) != "080110ef9bafcdf8acd19101" {
		t.Errorf("RPCResponseResult = %x, %v, %v", resp, hasErr, err)
	}
}

const routePush = "088de0b75d102a22470a45088de0b75d12180891a2c4880110a2c488910218b3e6cc990320c48891a20432066e6f64652d6142060880e2cfaa064803520e322e362e342d38343238613839645a00681832240a120a08088de0b75d12017812060a02010218010a0e0a08088de0b75d12017912021801"

func TestParseRouteSync_Vector(t *testing.T) {
	rs, err := ParseRouteSync(unhex(t, routePush))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Peers) != 1 {
		t.Fatalf("peers = %d, want 1", len(rs.Peers))
	}
	p := rs.Peers[0]
	if p.PeerID != nodeID || p.Hostname != "node-a" || p.SoftwareVersion() != "2.6.4" || p.IsPublicServer {
		t.Errorf("peer = %+v", p)
	}
	total, withPeers := NetworkCount(rs.Foreign, nodeID)
	if total != 2 || withPeers != 1 {
		t.Errorf("NetworkCount = %d, %d, want 2, 1", total, withPeers)
	}
}

func TestKeys_OpenVectors(t *testing.T) {
	k := NewKeys("sample-secret")
	for _, tc := range []struct{ name, payload string }{
		{CipherAES128GCM, "6603d30c2771489ceb56a15e738055835ff17e8bc3bda4584ec2b6b13502000102030405060708090a0b"},
		{CipherAES256GCM, "1dbc2de1bf8b5d417f1d2cbe3a4ab19fc86b9991d50ca6019ebb23d00630000102030405060708090a0b"},
		{CipherChaCha20, "55a33d06c814a38b10ae83102952d0b22af8fc20586de568bbafc3894727000102030405060708090a0b"},
	} {
		pt, name, err := k.Open(unhex(t, tc.payload), nil)
		if err != nil || name != tc.name || string(pt) != "hello easytier" {
			t.Errorf("Open(%s vector) = %q, %s, %v", tc.name, pt, name, err)
		}
	}
	frame := unhex(t, "880000000df0ad0bd2029649080101005c00000006b43ab884553d707898882f17d0b9e5e84c4a23a997f4029d395cdab1af276a45d658a53efbe46c6343ca0b77e19a374527fc4f33a7c691eaa579b1fe33161e26b0369e21eca15c499ff49c1e8604d67eac5eeec30079f9ec0c62adbf7f1d4ce31ff6708ff896558be228ff000102030405060708090a0b")
	n, err := TCPFrameLen([4]byte(frame[:4]))
	if err != nil || n != 136 {
		t.Fatalf("TCPFrameLen = %d, %v", n, err)
	}
	h, payload, _ := ParsePacket(frame[4:])
	if h.Flags&FlagEncrypted == 0 {
		t.Fatal("encrypted flag not set")
	}
	pt, _, err := k.Open(payload, nil)
	if err != nil || hex.EncodeToString(pt) != syncReqPacket {
		t.Errorf("Open(frame) = %x, %v", pt, err)
	}
	if _, _, err := NewKeys("wrong").Open(payload, func([]byte) bool { return false }); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Open with wrong secret err = %v, want ErrDecrypt", err)
	}
	x, _ := k.Seal(CipherXOR, []byte("plain"), nil)
	if pt, name, err := k.Open(x, func(b []byte) bool { return bytes.Equal(b, []byte("plain")) }); err != nil || name != CipherXOR || string(pt) != "plain" {
		t.Errorf("Open(xor) = %q, %s, %v", pt, name, err)
	}
}

// A node on EasyTier's default cipher costs the prober one AEAD set-up, not
// three; the others are set up only when tried, in order.
func TestKeys_SetsUpCiphersWhenTried(t *testing.T) {
	k := NewKeys("sample-secret")
	if _, name, err := k.Open(unhex(t, "6603d30c2771489ceb56a15e738055835ff17e8bc3bda4584ec2b6b13502000102030405060708090a0b"), nil); err != nil || name != CipherAES128GCM {
		t.Fatalf("Open(aes-gcm vector) = %s, %v", name, err)
	}
	if k.built != 1 {
		t.Errorf("after an aes-gcm payload %d AEADs set up, want 1", k.built)
	}
	if _, name, err := k.Open(unhex(t, "55a33d06c814a38b10ae83102952d0b22af8fc20586de568bbafc3894727000102030405060708090a0b"), nil); err != nil || name != CipherChaCha20 {
		t.Fatalf("Open(chacha20 vector) = %s, %v", name, err)
	}
	if k.built != 3 {
		t.Errorf("after a chacha20 payload %d AEADs set up, want 3", k.built)
	}
	// Sealing with a cipher set up later still matches the vectors' keys.
	k2 := NewKeys("sample-secret")
	ct, err := k2.Seal(CipherAES256GCM, []byte("hello easytier"), unhex(t, "000102030405060708090a0b"))
	if err != nil || hex.EncodeToString(ct) != "1dbc2de1bf8b5d417f1d2cbe3a4ab19fc86b9991d50ca6019ebb23d00630000102030405060708090a0b" {
		t.Errorf("Seal(aes-256-gcm) = %x, %v", ct, err)
	}
}

func TestTCPFrameLen_Bounds(t *testing.T) {
	for _, tc := range []struct {
		n    uint32
		want error
	}{{15, ErrShort}, {16, nil}, {2000, nil}, {2001, ErrTooLong}} {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], tc.n)
		if _, err := TCPFrameLen(b); !errors.Is(err, tc.want) && !(err == nil && tc.want == nil) {
			t.Errorf("TCPFrameLen(%d) = %v, want %v", tc.n, err, tc.want)
		}
	}
}

func TestMerger_Pieces(t *testing.T) {
	d := Descriptor{Domain: "n", Proto: RouteProto, Service: RouteService, Method: 1}
	var m Merger
	mk := func(idx uint32, body string) RPCPacket {
		return RPCPacket{FromPeer: 9, TransactionID: 4, TotalPieces: 3, PieceIdx: idx, Body: []byte(body), HasDescriptor: idx == 0, Descriptor: d, IsRequest: true}
	}
	for i, p := range []RPCPacket{mk(2, "c"), mk(0, "a"), mk(0, "a")} {
		if _, done, err := m.Add(p); done || err != nil {
			t.Fatalf("Add #%d = done %v, %v", i, done, err)
		}
	}
	whole, done, err := m.Add(mk(1, "b"))
	if !done || err != nil || string(whole.Body) != "abc" || !whole.Descriptor.IsRouteSync() {
		t.Errorf("merged = %q, %v, %v", whole.Body, done, err)
	}
	if _, _, err := m.Add(RPCPacket{TotalPieces: 2, PieceIdx: 5}); !errors.Is(err, ErrPieces) {
		t.Errorf("Add(idx>=total) = %v, want ErrPieces", err)
	}
	if _, _, err := m.Add(RPCPacket{}); !errors.Is(err, ErrPieces) {
		t.Errorf("Add(legacy without descriptor) = %v, want ErrPieces", err)
	}
}

func TestCheckOutbound_Refuses(t *testing.T) {
	dup := AppendPacket(nil, proberID, nodeID, TypeRPCResp, unhex(t, syncRespPacket))
	// Rewrite the response body to carry error = DuplicatePeerId (18 00).
	bad := bytes.Replace(dup, unhex(t, "2a0e0a0c080110ef9bafcdf8acd19101"), unhex(t, "2a100a0e080110ef9bafcdf8acd191011800"), 1)
	for name, pkt := range map[string][]byte{
		"foreign packet":     AppendPacket(nil, proberID, nodeID, TypeForeign, make([]byte, 20)),
		"short pong":         AppendPacket(nil, proberID, nodeID, TypePong, []byte{1}),
		"long ping":          AppendPacket(nil, proberID, nodeID, TypePing, make([]byte, 8)),
		"data":               AppendPacket(nil, proberID, nodeID, TypeData, []byte("x")),
		"duplicate peer id":  bad,
		"handshake digest 0": AppendPacket(nil, proberID, 0, TypeHandShake, []byte{0x08, 0x01}),
		"truncated header":   make([]byte, 10),
	} {
		if err := CheckOutbound(pkt); err == nil {
			t.Errorf("CheckOutbound(%s) = nil, want error", name)
		}
	}
}

// BenchmarkDecode decodes the packets of a probe's hot path: a pong, a
// node handshake and a sealed route push.
func BenchmarkDecode(b *testing.B) {
	pong := AppendPacket(nil, nodeID, proberID, TypePong, PingPayload(7))
	hs := AppendPacket(nil, nodeID, 0, TypeHandShake, AppendHandshake(nil, nodeID, "sample-net", Digest("sample-net", "sample-secret")))
	push := unhex(b, routePush)
	k := NewKeys("sample-secret")
	sealed, _ := k.Seal(CipherAES128GCM, unhex(b, syncReqPacket), make([]byte, 12))
	b.Run("pong", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, p, _ := ParsePacket(pong)
			if _, err := PingSeq(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("handshake", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, p, _ := ParsePacket(hs)
			if _, err := ParseHandshake(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("route_push", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := ParseRouteSync(push); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open_aes128gcm", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, _, err := k.Open(sealed, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
