package easytiertest

import (
	"bytes"
	"crypto/rand"
	"net"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/neouptime/neo-uptime-node/probe/easytier/wire"
)

// nodeSession is the node side of one accepted connection.
type nodeSession struct {
	f         *Fake
	sc        serverConn
	peer      uint32
	theirName string
	delayed   sync.WaitGroup // writes scheduled by later; serve waits for them

	keysMu sync.Mutex // pushes may be sent from later's goroutines
	keys   *wire.Keys // like a node's, derived once per connection
}

// seal encrypts a route push piece with the fake's cipher.
func (n *nodeSession) seal(pkt, nonce []byte) ([]byte, error) {
	n.keysMu.Lock()
	defer n.keysMu.Unlock()
	if n.keys == nil {
		n.keys = wire.NewKeys(n.f.NetworkSecret)
	}
	return n.keys.Seal(n.f.Encrypt, pkt, nonce)
}

func (n *nodeSession) send(t wire.PacketType, payload []byte) error {
	return n.sc.write(wire.AppendPacket(nil, n.f.PeerID, n.peer, t, payload))
}

func (n *nodeSession) run(hs wire.Handshake) {
	f := n.f
	digest := wire.Digest(f.NetworkName, f.NetworkSecret)
	replyDigest := digest
	same := hs.NetworkName == f.NetworkName
	if same && !bytes.Equal(hs.Digest, digest[:]) || f.Behavior == WrongSecret {
		replyDigest = [32]byte{}
	}
	reply := wire.AppendPacket(nil, f.PeerID, 0, wire.TypeHandShake,
		wire.AppendHandshake(nil, f.PeerID, f.NetworkName, replyDigest))
	switch f.Behavior {
	case Garbage:
		junk := make([]byte, 64)
		_, _ = rand.Read(junk)
		junk[0], junk[1], junk[2], junk[3] = 0x30, 0, 0, 0 // plausible tcp length
		_ = n.sc.raw(junk)
		time.Sleep(50 * time.Millisecond)
		return
	case FrameTooShort:
		_ = n.sc.raw(append(le32(4), 1, 2, 3, 4))
		time.Sleep(50 * time.Millisecond)
		return
	case FrameTooLong:
		_ = n.sc.raw(append(le32(5000), make([]byte, 64)...))
		time.Sleep(50 * time.Millisecond)
		return
	case SlowDrip:
		frame := wire.AppendTCPFrame(nil, reply)
		for _, b := range frame {
			if n.sc.raw([]byte{b}) != nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		return
	case TextMessage:
		if w, ok := n.sc.(*wsServerConn); ok {
			_ = w.text("hello")
			time.Sleep(50 * time.Millisecond)
		}
		return
	}
	if err := n.sc.write(reply); err != nil {
		return
	}
	if f.Behavior == CloseAfterHandshake || f.Behavior == WrongSecret || (same && replyDigest == [32]byte{}) {
		return
	}
	if f.Behavior == NoPong {
		for {
			if _, err := n.sc.read(); err != nil {
				return
			}
		}
	}
	n.serve(same)
}

// serve answers pings and route syncs until the client goes away.
func (n *nodeSession) serve(same bool) {
	f := n.f
	_ = n.send(wire.TypePing, wire.PingPayload(0)) // the node's own pinger starts at once
	if f.Behavior == UnknownTypes {
		_ = n.send(wire.PacketType(42), []byte{1, 2, 3})
		_ = n.send(wire.TypeData, []byte("data"))
	}
	defer n.delayed.Wait()
	for {
		pkt, err := n.sc.read()
		if err != nil {
			return
		}
		h, payload, err := wire.ParsePacket(pkt)
		if err != nil {
			return
		}
		switch h.Type {
		case wire.TypePing:
			pong := append([]byte(nil), pkt...)
			pong[8] = byte(wire.TypePong)
			if f.Delay > 0 {
				n.later(f.Delay, func() { _ = n.sc.write(pong) })
			} else {
				_ = n.sc.write(pong)
			}
		case wire.TypeRPCReq:
			if p, err := wire.ParseRPCPacket(payload); err == nil && p.Descriptor.IsRouteSync() {
				if f.RouteDelay > 0 {
					n.later(f.RouteDelay, func() { n.pushRoute(p, same) })
				} else {
					n.pushRoute(p, same)
				}
			}
		}
	}
}

// later runs send after d, and serve does not return before it has.
func (n *nodeSession) later(d time.Duration, send func()) {
	n.delayed.Add(1)
	time.AfterFunc(d, func() { defer n.delayed.Done(); send() })
}

// pushRoute sends the node's SyncRouteInfo request: its own RoutePeerInfo
// and, in its own network, its foreign-network table.
func (n *nodeSession) pushRoute(req wire.RPCPacket, same bool) {
	f := n.f
	host := f.Hostname
	if !same {
		host = "PublicServer_" + host
	}
	var info []byte
	info = protowire.AppendTag(info, 1, protowire.VarintType)
	info = protowire.AppendVarint(info, uint64(f.PeerID))
	info = protowire.AppendTag(info, 6, protowire.BytesType)
	info = protowire.AppendString(info, host)
	info = protowire.AppendTag(info, 10, protowire.BytesType)
	info = protowire.AppendString(info, f.Version)
	if !same {
		info = protowire.AppendTag(info, 11, protowire.BytesType)
		info = protowire.AppendBytes(info, []byte{0x08, 0x01})
	}
	var msg []byte
	msg = protowire.AppendTag(msg, 1, protowire.VarintType)
	msg = protowire.AppendVarint(msg, uint64(f.PeerID))
	var infos []byte
	infos = protowire.AppendTag(infos, 1, protowire.BytesType)
	infos = protowire.AppendBytes(infos, info)
	msg = protowire.AppendTag(msg, 4, protowire.BytesType)
	msg = protowire.AppendBytes(msg, infos)
	if same && len(f.Foreign) > 0 {
		var fi []byte
		for _, name := range f.Foreign {
			var key, val, item []byte
			key = protowire.AppendTag(key, 1, protowire.VarintType)
			key = protowire.AppendVarint(key, uint64(f.PeerID))
			key = protowire.AppendTag(key, 2, protowire.BytesType)
			key = protowire.AppendString(key, name)
			val = protowire.AppendTag(val, 1, protowire.BytesType)
			val = protowire.AppendBytes(val, []byte{1})
			item = protowire.AppendTag(item, 1, protowire.BytesType)
			item = protowire.AppendBytes(item, key)
			item = protowire.AppendTag(item, 2, protowire.BytesType)
			item = protowire.AppendBytes(item, val)
			fi = protowire.AppendTag(fi, 1, protowire.BytesType)
			fi = protowire.AppendBytes(fi, item)
		}
		msg = protowire.AppendTag(msg, 6, protowire.BytesType)
		msg = protowire.AppendBytes(msg, fi)
	}
	var body []byte
	body = protowire.AppendTag(body, 2, protowire.BytesType)
	body = protowire.AppendBytes(body, msg)
	body = protowire.AppendTag(body, 3, protowire.VarintType)
	body = protowire.AppendVarint(body, 3000)
	pieces := 1
	if f.Behavior == HugeRoute {
		pieces = 40 // tiny pieces, pings interleaved: reassembly under stress
	}
	chunk := (len(body) + pieces - 1) / pieces
	for i := 0; i < pieces; i++ {
		part := body[min(i*chunk, len(body)):min((i+1)*chunk, len(body))]
		pkt := appendPiece(f.PeerID, n.peer, req.TransactionID+1000, req.Descriptor, part, uint32(pieces), uint32(i))
		flags := uint8(0)
		if same && f.Encrypt != "" {
			nonce := make([]byte, 12)
			_, _ = rand.Read(nonce)
			sealed, err := n.seal(pkt, nonce)
			if err != nil {
				return
			}
			pkt, flags = sealed, wire.FlagEncrypted
		}
		frame := wire.AppendPacket(nil, f.PeerID, n.peer, wire.TypeRPCReq, pkt)
		frame[9] = flags
		if f.Behavior == HugeRoute && i%7 == 3 {
			_ = n.send(wire.TypePing, wire.PingPayload(uint32(100+i))) // interleave
		}
		if n.sc.write(frame) != nil {
			return
		}
	}
}

// appendPiece encodes one RpcPacket piece as a node sends it.
func appendPiece(from, to uint32, tx int64, d wire.Descriptor, body []byte, total, idx uint32) []byte {
	var b, desc []byte
	desc = protowire.AppendTag(desc, 1, protowire.BytesType)
	desc = protowire.AppendString(desc, d.Domain)
	desc = protowire.AppendTag(desc, 2, protowire.BytesType)
	desc = protowire.AppendString(desc, d.Proto)
	desc = protowire.AppendTag(desc, 3, protowire.BytesType)
	desc = protowire.AppendString(desc, d.Service)
	desc = protowire.AppendTag(desc, 4, protowire.VarintType)
	desc = protowire.AppendVarint(desc, uint64(d.Method))
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(from))
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(to))
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(tx))
	if idx == 0 {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, desc)
	}
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	b = protowire.AppendBytes(b, body)
	b = protowire.AppendTag(b, 6, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	b = protowire.AppendTag(b, 7, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(total))
	b = protowire.AppendTag(b, 8, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(idx))
	return b
}

// serveUDP runs the UDP tunnel listener: SYN → SACK, then data per client
// address. A new SYN from an address ends that address's session, which
// is what a real node's listener (2.6.4) shows on the wire: it maps each
// address to its latest connection and drops the old one's sender, though
// the old peer connection lingers inside the node until its ping-loss
// rule fires.
func (f *Fake) serveUDP() {
	defer f.wg.Done()
	type client struct {
		id uint32
		in chan []byte
	}
	clients := map[string]*client{}
	buf := make([]byte, 65536)
	for {
		nr, addr, err := f.udp.ReadFromUDP(buf)
		if err != nil {
			for _, c := range clients {
				close(c.in)
			}
			return
		}
		id, typ, body, err := wire.ParseUDP(buf[:nr])
		if err != nil {
			continue
		}
		key := addr.String()
		switch typ {
		case wire.UDPSyn:
			if f.Behavior == AcceptSilence || len(body) != 8 {
				continue
			}
			if old := clients[key]; old != nil {
				close(old.in)
			}
			c := &client{id: id, in: make(chan []byte, 256)}
			clients[key] = c
			_, _ = f.udp.WriteToUDP(wire.AppendUDP(nil, id, wire.UDPSack, body), addr)
			sc := &udpServerConn{f: f, addr: addr, id: id, in: c.in}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.serve(sc, nopCloser{})
			}()
		case wire.UDPData:
			if c := clients[key]; c != nil && c.id == id {
				select {
				case c.in <- append([]byte(nil), body...):
				default:
				}
			}
		}
	}
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

type udpServerConn struct {
	f    *Fake
	addr *net.UDPAddr
	id   uint32
	in   chan []byte
}

func (u *udpServerConn) read() ([]byte, error) {
	b, ok := <-u.in
	if !ok {
		return nil, net.ErrClosed
	}
	return b, nil
}

func (u *udpServerConn) write(pkt []byte) error {
	_, err := u.f.udp.WriteToUDP(wire.AppendUDP(nil, u.id, wire.UDPData, pkt), u.addr)
	return err
}

func (u *udpServerConn) raw(b []byte) error {
	_, err := u.f.udp.WriteToUDP(b, u.addr)
	return err
}
