package easytier

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier/wire"
	"github.com/neouptime/neo-uptime-node/probe/internal/oserr"
)

// packetConn carries whole EasyTier packets (header + payload) over one
// transport. read blocks until a packet arrives, the read deadline passes
// (a timeout error; nothing read is lost, the next read goes on) or the
// conn is closed, and says when the packet arrived (rxstamp.go).
// setReadDeadline may be called from another goroutine, and wakes a
// blocked read.
type packetConn interface {
	write(pkt []byte) error
	read() (pkt []byte, at time.Time, err error)
	setReadDeadline(t time.Time) error
	close() // clean close (WS Close frame, TCP FIN); never blocks long
}

// batcher is a packetConn whose writes wait for flush, which sends them
// in one write. ready reports whether a whole packet is already
// buffered, so that the next read returns it without waiting.
type batcher interface {
	flush() error
	ready() bool
}

// restarter is a packetConn whose transport can start over before the
// handshake reply: udp, where nothing retransmits a lost datagram.
type restarter interface {
	restart(ctx context.Context, limit time.Time) error
}

// On udp, a handshake whose reply has not come within hsRetryAfter
// starts over on a new session (udp.go's restart), at most maxHSRetries
// times, while at least hsRetryAfter of the handshake timeout is left. On
// tcp and ws the kernel retransmits; on udp one lost datagram, ours or
// the reply, would otherwise lose the whole probe, and EasyTier's own
// connector would simply connect again (v2.6.4 keeps the old session's
// connection, if it had accepted it, until its ping-loss rule fires; so
// each new session joins under a new peer id). hsRetryAfter is hsRetryMin or
// four SYN→SACK round trips, whichever is longer: a node answers the
// handshake at once, so a reply that late is lost, not slow.
const (
	hsRetryMin   = time.Second
	maxHSRetries = 2
)

// inbound is one packet read, stamped on arrival.
type inbound struct {
	pkt []byte
	at  time.Time
}

// session is one probe's exchange on an established transport, driven by
// run's single loop on the probe's own goroutine: it waits for the next
// packet with the conn's read deadline set to when it must next act.
type session struct {
	pc     packetConn
	b      batcher // pc, when its writes wait for flush (tcp); else nil
	opts   Options
	obs    *Observation
	myID   uint32
	sessID uint64
	txID   int64
	digest [32]byte

	nodeID     uint32
	replied    bool
	sentAt     outstanding // pings sent and not yet answered (in sentBuf)
	sentBuf    [4]sentPing // the default samples' worth
	heldPings  []uint32    // pings written to a batcher, not yet flushed (in heldBuf)
	heldBuf    [2]uint32
	nextSeq    uint32
	merger     wire.Merger
	self       *wire.RoutePeerInfo   // the node's own route info, once seen
	foreign    []wire.ForeignNetwork // accumulated foreign-network entries
	gotForeign bool
	cipher     string // the cipher that opened the node's pushes

	// Scratch for what we send: each packet is built, written (the
	// transport copies it) and forgotten before the next, so one payload
	// and one packet buffer serve the whole probe.
	msgBuf [160]byte
	pktBuf [192]byte
}

func newSession(pc packetConn, opts *Options, obs *Observation) *session {
	s := &session{
		pc:     pc,
		opts:   *opts,
		obs:    obs,
		digest: wire.Digest(opts.NetworkName, opts.NetworkSecret),
	}
	s.b, _ = pc.(batcher)
	s.heldPings = s.heldBuf[:0]
	s.sentAt = s.sentBuf[:0]
	s.newIdentity()
	return s
}

// newIdentity draws our peer id, route session id and first RPC
// transaction id.
func (s *session) newIdentity() {
	var b [20]byte
	_, _ = rand.Read(b[:])
	s.myID = binary.LittleEndian.Uint32(b[0:]) | 1 // non-zero
	s.sessID = binary.LittleEndian.Uint64(b[4:])
	s.txID = int64(binary.LittleEndian.Uint64(b[12:]) >> 1)
	s.obs.PeerID = s.myID
}

// close ends the transport; a finished probe leaves nothing behind.
func (s *session) close() { s.pc.close() }

// pastDeadline is a read deadline that has passed: it wakes a blocked read.
var pastDeadline = time.Unix(1, 0)

// send wraps payload in a packet header and writes it. payload may be
// built in s.msgBuf.
func (s *session) send(t wire.PacketType, to uint32, payload []byte) error {
	return s.sendPacket(wire.AppendPacket(s.pktBuf[:0], s.myID, to, t, payload))
}

// sendPacket writes one packet; pkt is not kept (it may be s.pktBuf).
func (s *session) sendPacket(pkt []byte) error {
	if err := wire.CheckOutbound(pkt); err != nil {
		return fmt.Errorf("%w: %w", ErrUnsafeSend, err)
	}
	if s.opts.OnSend != nil {
		s.opts.OnSend(pkt)
	}
	return writeErr(s.pc.write(pkt))
}

// writeErr drops the error of a write the node's hang-up refused: the
// next read then meets the same hang-up, after whatever the node sent before
// it, and readErr classifies it with all that known (a secure-mode node
// closes right after its handshake reply, a rejecting node after a pong).
func writeErr(err error) error {
	if oserr.Reset(err) {
		return nil
	}
	return err
}

// run performs handshake, pings and route sync, filling s.obs.
func (s *session) run(ctx context.Context) error {
	obs := s.obs
	obs.Stage = StageHandshake
	hsStart := time.Now()
	if err := s.sendHandshake(); err != nil {
		return err
	}
	hsDeadline := hsStart.Add(s.opts.HandshakeTimeout)
	rs, canRestart := s.pc.(restarter)
	hsRetryAfter := max(hsRetryMin, 4*obs.Timings.Connect)
	hsRetryAt := hsStart.Add(hsRetryAfter)
	var (
		acceptedAt   time.Time
		nextPing     time.Time
		routeDone    bool
		routeUntil   time.Time
		foreignUntil time.Time
		reaskAt      time.Time // when to repeat the route sync request
		reasks       int
	)
	ctxEnd, hasEnd := ctx.Deadline()
	// Cancelling ctx wakes the loop's read; the loop sees ctx.Err after
	// setting each deadline, so a cancel can never be overwritten unseen.
	defer context.AfterFunc(ctx, func() { _ = s.pc.setReadDeadline(pastDeadline) })()
	// Where the transport can (tcp), writes wait until the session is
	// about to wait for the node: what it sends in answer to the packets
	// that one read brought, and the ping that falls due with them, leave
	// in one write. One syscall and one segment instead of several, and
	// the node never has two of ours unacknowledged at once (a loaded node
	// acknowledges late, and the sender's kernel then retransmits the
	// last segment as a tail-loss probe).
	if s.b != nil {
		defer func() { _ = s.flush() }()
	}
	for {
		now := time.Now()
		// Work out what is due and when the loop must next wake up.
		wake := now.Add(time.Hour)
		if !s.replied {
			if !now.Before(hsDeadline) {
				obs.Reason = ReasonHandshakeTimeout
				return fmt.Errorf("waiting %v: %w", s.opts.HandshakeTimeout, ErrHandshakeTimeout)
			}
			wake = hsDeadline
			if canRestart && obs.HandshakeResent < maxHSRetries && hsDeadline.Sub(hsRetryAt) >= hsRetryAfter {
				if !now.Before(hsRetryAt) {
					obs.HandshakeResent++
					if err := rs.restart(ctx, hsDeadline); err != nil {
						if ctx.Err() != nil {
							return s.ctxErr(ctx, time.Time{})
						}
						obs.Reason = ReasonHandshakeTimeout
						return fmt.Errorf("%w, and starting over failed: %w", ErrHandshakeTimeout, err)
					}
					// As a new peer: a node whose reply was lost has
					// accepted the old session, and keeps that connection
					// (until its ping-loss rule fires) as our peer id's
					// default, on which it would send its route sync.
					s.newIdentity()
					hsStart = time.Now()
					hsRetryAt = hsStart.Add(hsRetryAfter)
					if err := s.sendHandshake(); err != nil {
						return err
					}
					continue
				}
				wake = hsRetryAt
			}
		} else {
			for i := 0; i < len(s.sentAt); {
				if exp := s.sentAt[i].at.Add(s.opts.PingTimeout); !now.Before(exp) {
					s.sentAt.remove(i)
					obs.Lost++
				} else {
					if exp.Before(wake) {
						wake = exp
					}
					i++
				}
			}
			if obs.Sent < s.opts.Samples {
				if !now.Before(nextPing) {
					if err := s.ping(); err != nil {
						return err
					}
					nextPing = now.Add(s.opts.Interval)
				}
				if obs.Sent < s.opts.Samples && nextPing.Before(wake) {
					wake = nextPing
				}
			}
			if !acceptedAt.IsZero() && !routeDone && !routeUntil.IsZero() {
				until := routeUntil
				if s.self != nil {
					until = foreignUntil
				}
				// Like EasyTier's own retries: ask again if nothing came.
				if s.self == nil && reasks < maxReasks && !now.Before(reaskAt) {
					reasks++
					reaskAt = now.Add(reaskEvery)
					if err := s.askRoute(); err != nil {
						return err
					}
				}
				if s.self == nil && reasks < maxReasks && reaskAt.Before(until) {
					until = reaskAt
				}
				switch {
				case s.self == nil && !now.Before(routeUntil):
					routeDone = true
					if obs.NodeMissed == "" {
						obs.NodeMissed = ReasonNoRouteInfo
					}
				case s.self != nil && (s.gotForeign || obs.Mode == "foreign" || s.opts.ForeignWait < 0 || !now.Before(foreignUntil)):
					routeDone = true
				case until.Before(wake):
					wake = until
				}
			}
			pingsDone := obs.Sent >= s.opts.Samples && len(s.sentAt) == 0
			if pingsDone && (routeDone || acceptedAt.IsZero() || s.opts.RouteWait < 0) {
				return s.verdict(acceptedAt)
			}
		}
		if hasEnd && ctxEnd.Before(wake) {
			wake = ctxEnd
		}
		if s.b != nil && !s.b.ready() {
			if err := s.flush(); err != nil {
				return fmt.Errorf("sending: %w", err)
			}
		}
		_ = s.pc.setReadDeadline(wake)
		if ctx.Err() != nil {
			return s.ctxErr(ctx, acceptedAt)
		}
		pkt, at, err := s.pc.read()
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return s.readErr(err, acceptedAt)
			}
			if ctx.Err() != nil || hasEnd && !time.Now().Before(ctxEnd) {
				return s.ctxErr(ctx, acceptedAt)
			}
			continue // the loop's own wake-up: something is due
		}
		in := inbound{pkt: pkt, at: at}
		if s.opts.OnRecv != nil {
			s.opts.OnRecv(in.pkt)
		}
		accepted, err := s.handle(in, hsStart)
		if err != nil {
			return err
		}
		if s.self != nil && foreignUntil.IsZero() {
			// A separate foreign-network push follows the node's own
			// info closely if at all: wait for it from here.
			foreignUntil = in.at.Add(max(s.opts.ForeignWait, 0))
		}
		if accepted && acceptedAt.IsZero() {
			acceptedAt = in.at
			if s.opts.RouteWait > 0 {
				routeUntil = in.at.Add(s.opts.RouteWait)
				reaskAt = in.at.Add(reaskEvery)
				if err := s.askRoute(); err != nil {
					return err
				}
			}
		}
	}
}

// flush sends what the batcher holds. A ping among it is stamped as it
// leaves, so its round trip does not count the time it waited.
func (s *session) flush() error {
	if len(s.heldPings) > 0 {
		now := time.Now()
		for _, seq := range s.heldPings {
			if i := s.sentAt.find(seq); i >= 0 {
				s.sentAt[i].at = now
			}
		}
		s.heldPings = s.heldPings[:0]
	}
	return writeErr(s.b.flush())
}

// The route sync request is repeated at most maxReasks times, reaskEvery
// apart, while the node has not pushed its routes.
const (
	maxReasks  = 2
	reaskEvery = 500 * time.Millisecond
)

// sendHandshake sends our handshake, under our current peer id.
func (s *session) sendHandshake() error {
	hs := wire.AppendHandshake(s.msgBuf[:0], s.myID, s.opts.NetworkName, s.digest)
	if err := s.send(wire.TypeHandShake, 0, hs); err != nil {
		return fmt.Errorf("sending handshake: %w", err)
	}
	return nil
}

func (s *session) ping() error {
	seq := s.nextSeq
	s.nextSeq++
	s.obs.Sent++
	s.sentAt = append(s.sentAt, sentPing{seq, time.Now()})
	if s.b != nil {
		s.heldPings = append(s.heldPings, seq)
	}
	if err := s.send(wire.TypePing, s.nodeID, wire.AppendPingPayload(s.msgBuf[:0], seq)); err != nil {
		return fmt.Errorf("sending ping %d: %w", seq, err)
	}
	return nil
}

func (s *session) askRoute() error {
	s.txID++
	req := wire.AppendRouteSyncRequest(s.msgBuf[:0], s.myID, s.nodeID, s.txID, s.opts.NetworkName, s.sessID)
	if err := s.send(wire.TypeRPCReq, s.nodeID, req); err != nil {
		return fmt.Errorf("sending route sync: %w", err)
	}
	return nil
}

// handle processes one packet. It reports whether the packet showed that
// the node accepted us.
func (s *session) handle(in inbound, hsStart time.Time) (accepted bool, err error) {
	h, payload, err := wire.ParsePacket(in.pkt)
	if err != nil {
		s.obs.Reason = ReasonBadFrame
		return false, fmt.Errorf("reading packet: %w", err)
	}
	if !s.replied {
		switch h.Type {
		case wire.TypeHandShake:
			return false, s.handleReply(payload, in.at.Sub(hsStart))
		case wire.TypePing, wire.TypePong, wire.TypeRPCReq, wire.TypeRPCResp, wire.TypeData:
			return false, nil // EasyTier's client skips these while waiting
		default:
			s.obs.Reason = ReasonUnexpectedFirstReply
			return false, fmt.Errorf("packet type %d: %w", h.Type, ErrUnexpectedPacket)
		}
	}
	switch h.Type {
	case wire.TypePing:
		pong, err := wire.AppendPongFor(s.pktBuf[:0], in.pkt)
		if err != nil {
			return false, nil // never echo a short ping
		}
		if err := s.sendPacket(pong); err != nil {
			return false, fmt.Errorf("answering ping: %w", err)
		}
		return true, nil
	case wire.TypePong:
		seq, err := wire.PingSeq(payload)
		if err != nil {
			return false, nil
		}
		i := s.sentAt.find(seq)
		if i < 0 {
			return false, nil // late or duplicate
		}
		at := s.sentAt[i].at
		s.sentAt.remove(i)
		rtt := in.at.Sub(at)
		if rtt <= 0 {
			// A kernel stamp before the ping left: only a wall-clock
			// step between the stamp and its read does that.
			rtt = time.Since(at)
		}
		s.obs.SamplesUS = append(s.obs.SamplesUS, rtt.Microseconds())
		return true, nil
	case wire.TypeRPCReq, wire.TypeRPCResp:
		s.handleRPC(h, payload)
		return false, nil
	}
	return false, nil // data, kcp, quic, noise relays: not for us
}

func (s *session) handleReply(payload []byte, took time.Duration) error {
	obs := s.obs
	reply, err := wire.ParseHandshake(payload)
	if err != nil {
		obs.Reason = ReasonBadFrame
		return err
	}
	s.replied = true
	obs.Timings.Handshake = took
	obs.Stage = StagePing
	s.nodeID, obs.NodePeerID, obs.NodeNetwork = reply.PeerID, reply.PeerID, reply.NetworkName
	if reply.PeerID == s.myID {
		obs.Reason = ReasonPeerIDConflict
		return ErrPeerIDConflict
	}
	if reply.NetworkName != s.opts.NetworkName {
		obs.Mode = "foreign"
		return nil
	}
	obs.Mode = "same"
	if string(reply.Digest) != string(s.digest[:]) {
		obs.Reason = ReasonWrongSecret
		return ErrWrongSecret
	}
	return nil
}

// handleRPC answers the node's route pushes and collects its own route
// info and its foreign-network table, which may come in separate pushes.
func (s *session) handleRPC(h wire.Header, payload []byte) {
	if h.Flags&wire.FlagEncrypted != 0 {
		k := lender.borrow(s.opts.NetworkSecret)
		pt, name, err := k.Open(payload, looksLikeRPC)
		lender.giveBack(s.opts.NetworkSecret, k)
		if err != nil {
			if s.self == nil {
				s.obs.NodeMissed = ReasonDecryptFailed
			}
			return
		}
		payload, s.cipher = pt, name
	}
	p, err := wire.ParseRPCPacket(payload)
	if err != nil {
		return
	}
	whole, done, err := s.merger.Add(p)
	if err != nil || !done {
		return
	}
	if !whole.IsRequest {
		if _, hasErr, err := wire.RPCResponseResult(whole.Body); err == nil && hasErr {
			s.obs.NodeMissed = ReasonRouteRPCError
		}
		return
	}
	if !whole.Descriptor.IsRouteSync() {
		return // other services: let the caller time out
	}
	if err := wire.CheckCompression(whole); err != nil {
		s.obs.NodeMissed = ReasonCompressedRouteInfo
		return
	}
	// Acknowledge so the node does not retry; plaintext is accepted.
	_ = s.send(wire.TypeRPCResp, s.nodeID, wire.AppendRouteSyncResponse(s.msgBuf[:0], s.myID, s.nodeID, whole, s.sessID))
	inner, err := wire.RPCRequestInner(whole.Body)
	if err != nil {
		return
	}
	rs, err := wire.ParseRouteSync(inner)
	if err != nil {
		return
	}
	for i := range rs.Peers {
		if rs.Peers[i].PeerID == s.nodeID {
			s.self = &rs.Peers[i]
		}
	}
	if rs.HasForeign {
		s.gotForeign = true
		s.foreign = append(s.foreign, rs.Foreign...)
	}
	if s.self == nil {
		if rs.HasPeers {
			s.obs.NodeMissed = ReasonRouteSelfMissing
		}
		return
	}
	total, withPeers := wire.NetworkCount(s.foreign, s.nodeID)
	s.obs.Node = &NodeInfo{
		Version:          s.self.SoftwareVersion(),
		FullVersion:      s.self.EasyTierVersion,
		Hostname:         s.self.Hostname,
		IsPublicServer:   s.self.IsPublicServer,
		ForeignKnown:     s.gotForeign,
		ForeignNetworks:  total,
		ForeignWithPeers: withPeers,
		Cipher:           s.cipher,
	}
	s.obs.NodeMissed = ""
}

// looksLikeRPC validates an XOR trial decryption.
func looksLikeRPC(b []byte) bool {
	p, err := wire.ParseRPCPacket(b)
	return err == nil && (p.TotalPieces > 0 || p.HasDescriptor) && p.PieceIdx <= p.TotalPieces
}

func (s *session) verdict(acceptedAt time.Time) error {
	if len(s.obs.SamplesUS) > 0 {
		s.obs.Accepted = true
		return nil
	}
	s.obs.Accepted = !acceptedAt.IsZero()
	if acceptedAt.IsZero() && s.obs.Mode == "same" {
		// Right secret, yet not a single packet after the reply: over udp
		// this is how a secure-mode node refuses a legacy peer (over
		// tcp/ws it closes instead, see readErr).
		s.obs.Reason = ReasonSecureModeRequired
		return fmt.Errorf("%w: silent after the handshake reply", ErrSecureModeRequired)
	}
	s.obs.Reason = ReasonNoPong
	return fmt.Errorf("%d pings: %w", s.obs.Sent, ErrNoPong)
}

// readErr turns a transport read error into the probe's outcome.
func (s *session) readErr(err error, acceptedAt time.Time) error {
	closed := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		oserr.Reset(err) || errors.Is(err, net.ErrClosed) || errors.Is(err, errPeerClosed)
	switch {
	case !closed:
		if s.obs.Reason == "" {
			s.obs.Reason = ReasonBadFrame
		}
		return fmt.Errorf("reading from node: %w", err)
	case !s.replied:
		s.obs.Reason = ReasonClosedBeforeReply
		return fmt.Errorf("%w: %w", ErrClosedBeforeReply, err)
	case len(s.obs.SamplesUS) > 0:
		// The node hung up after answering: the sample stands.
		s.obs.Accepted = true
		s.obs.Lost += len(s.sentAt)
		s.sentAt = s.sentAt[:0]
		return nil
	case acceptedAt.IsZero() && s.obs.Mode == "same":
		// Same network, right secret, closed before any ping: the node's
		// secure mode refuses legacy same-network peers this way.
		s.obs.Reason = ReasonSecureModeRequired
		return fmt.Errorf("%w: %w", ErrSecureModeRequired, err)
	default:
		s.obs.Reason = ReasonRejected
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
}

func (s *session) ctxErr(ctx context.Context, acceptedAt time.Time) error {
	cause := ctx.Err()
	if cause == nil {
		cause = context.DeadlineExceeded // the conn deadline fired first
	}
	if len(s.obs.SamplesUS) > 0 {
		// Out of time but measured: report what we have.
		s.obs.Accepted = true
		s.obs.Lost += len(s.sentAt)
		s.sentAt = s.sentAt[:0]
		return nil
	}
	if !s.replied {
		s.obs.Reason = ReasonHandshakeTimeout
		return fmt.Errorf("waiting for handshake reply: %w", cause)
	}
	s.obs.Reason = ReasonNoPong
	return fmt.Errorf("waiting for pong: %w: %w", ErrNoPong, cause)
}

// outstanding holds the pings sent and not yet answered: one per sample
// at most, so a slice scanned whole. It was a map, whose iteration, begun
// at every turn of the session's loop, cost more than the scan (pprof).
type outstanding []sentPing

type sentPing struct {
	seq uint32
	at  time.Time // when it left (flush restamps a held one)
}

// find returns the index of seq's ping, or -1.
func (o outstanding) find(seq uint32) int {
	for i := range o {
		if o[i].seq == seq {
			return i
		}
	}
	return -1
}

// remove drops the i-th ping (order is not kept).
func (o *outstanding) remove(i int) {
	last := len(*o) - 1
	(*o)[i] = (*o)[last]
	*o = (*o)[:last]
}
