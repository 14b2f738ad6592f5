package easytier

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier/wire"
)

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// The session waits on the conn with a read deadline; a frame cut by it
// must come whole from the next read, whatever its size.
func TestTCPConn_FrameCutByTheDeadlineIsKept(t *testing.T) {
	ours, node := net.Pipe()
	defer node.Close()
	tc := newTCPConn(t.Context(), ours)
	defer tc.close()

	big := bytes.Repeat([]byte{0xab}, 3*tcpReadBuf) // grows the read buffer
	small := bytes.Repeat([]byte{0xcd}, wire.HeaderLen)
	stream := wire.AppendTCPFrame(wire.AppendTCPFrame(nil, big), small)

	cuts := []int{2, 4 + 100, 4 + len(big) + 3} // inside a prefix, a body, the next prefix
	go func() {
		prev := 0
		for _, c := range append(cuts, len(stream)) {
			node.Write(stream[prev:c])
			prev = c
			time.Sleep(30 * time.Millisecond)
		}
	}()
	var got [][]byte
	timeouts := 0
	for len(got) < 2 && timeouts < 100 {
		tc.setReadDeadline(time.Now().Add(10 * time.Millisecond))
		pkt, at, err := tc.read()
		switch {
		case isTimeout(err):
			timeouts++
		case err != nil:
			t.Fatalf("read: %v", err)
		default:
			if at.IsZero() {
				t.Error("a frame without its arrival time")
			}
			got = append(got, pkt)
		}
	}
	if timeouts == 0 {
		t.Error("no read met its deadline: the frames were not cut")
	}
	if len(got) != 2 || !bytes.Equal(got[0], big) || !bytes.Equal(got[1], small) {
		t.Fatalf("frames: got %d (lengths %v), want the %d- and %d-byte frames intact", len(got), lens(got), len(big), len(small))
	}
}

func lens(b [][]byte) []int {
	var n []int
	for _, x := range b {
		n = append(n, len(x))
	}
	return n
}

func TestTCPConn_HangUpInsideAFrame(t *testing.T) {
	for _, tc := range []struct {
		name string
		sent []byte
		want error
	}{
		{"between frames", wire.AppendTCPFrame(nil, make([]byte, wire.HeaderLen)), io.EOF},
		{"inside a frame", wire.AppendTCPFrame(nil, make([]byte, wire.HeaderLen))[:10], io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ours, node := net.Pipe()
			c := newTCPConn(t.Context(), ours)
			defer c.close()
			go func() { node.Write(tc.sent); node.Close() }()
			var err error
			for err == nil {
				_, _, err = c.read()
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("read error %v, want %v", err, tc.want)
			}
		})
	}
}

// chanConn is a blockingConn whose reads block until the test feeds them.
type chanConn struct {
	feed   chan inbound
	fail   chan error
	closed chan struct{}
}

func newChanConn() *chanConn {
	return &chanConn{feed: make(chan inbound), fail: make(chan error, 1), closed: make(chan struct{})}
}

func (c *chanConn) write([]byte) error { return nil }
func (c *chanConn) read() ([]byte, time.Time, error) {
	select {
	case in := <-c.feed:
		return in.pkt, in.at, nil
	case err := <-c.fail:
		return nil, time.Time{}, err
	case <-c.closed:
		return nil, time.Time{}, net.ErrClosed
	}
}
func (c *chanConn) close() { close(c.closed) }

func TestPumped_DeadlinesWakeupsAndErrorsInOrder(t *testing.T) {
	cc := newChanConn()
	p := newPumped(cc)
	defer p.close()

	p.setReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := p.read(); !errors.Is(err, os.ErrDeadlineExceeded) || !isTimeout(err) {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}

	// No deadline: a deadline set from elsewhere wakes the blocked read.
	p.setReadDeadline(time.Time{})
	woke := make(chan error, 1)
	go func() { _, _, err := p.read(); woke <- err }()
	time.Sleep(20 * time.Millisecond)
	p.setReadDeadline(pastDeadline)
	select {
	case err := <-woke:
		if !isTimeout(err) {
			t.Fatalf("woken read: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a deadline set while reading did not wake the read")
	}

	// Packets read before the conn failed come first, then the error,
	// every time.
	p.setReadDeadline(time.Time{})
	at := time.Now()
	cc.feed <- inbound{pkt: []byte("one"), at: at}
	cc.feed <- inbound{pkt: []byte("two"), at: at}
	boom := errors.New("boom")
	cc.fail <- boom
	for _, want := range []string{"one", "two"} {
		pkt, got, err := p.read()
		if err != nil || string(pkt) != want || !got.Equal(at) {
			t.Fatalf("read = %q, %v, %v; want %q at %v", pkt, got, err, want, at)
		}
	}
	for range 2 {
		if _, _, err := p.read(); err != boom {
			t.Fatalf("read after the packets: %v, want %v", err, boom)
		}
	}
}

// pipeNode is the node's end of a net.Pipe to a session: a pipe read
// returns at most one write, so each call of writes is one of ours.
type pipeNode struct {
	t    *testing.T
	c    net.Conn
	buf  []byte
	peer uint32 // the node's peer id
}

// writes returns the packets of our next write, and their types.
func (n *pipeNode) writes() ([][]byte, []wire.PacketType) {
	n.t.Helper()
	n.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := n.c.Read(n.buf)
	if err != nil {
		n.t.Fatalf("node read: %v", err)
	}
	var pkts [][]byte
	var types []wire.PacketType
	for b := n.buf[:m]; len(b) >= 4; {
		l, err := wire.TCPFrameLen([4]byte(b[:4]))
		if err != nil || 4+l > len(b) {
			n.t.Fatalf("a write that is not whole frames: %x", n.buf[:m])
		}
		h, _, err := wire.ParsePacket(b[4 : 4+l])
		if err != nil {
			n.t.Fatalf("parsing our packet: %v", err)
		}
		pkts, types = append(pkts, b[4:4+l]), append(types, h.Type)
		b = b[4+l:]
	}
	return pkts, types
}

// frame is one packet from the node to us, framed.
func (n *pipeNode) frame(to uint32, t wire.PacketType, payload []byte) []byte {
	return wire.AppendTCPFrame(nil, wire.AppendPacket(nil, n.peer, to, t, payload))
}

// startPipeSession runs a session on a pipe and reads its handshake.
func startPipeSession(t *testing.T, opts Options) (*session, *pipeNode, *Observation, <-chan error) {
	ours, node := net.Pipe()
	t.Cleanup(func() { node.Close() })
	obs := &Observation{}
	s := newSession(newTCPConn(t.Context(), ours), &opts, obs)
	done := make(chan error, 1)
	go func() { done <- s.run(t.Context()); s.close() }()
	n := &pipeNode{t: t, c: node, buf: make([]byte, 4096), peer: 77}
	if _, got := n.writes(); len(got) != 1 || got[0] != wire.TypeHandShake {
		t.Fatalf("first write: %v, want the handshake", got)
	}
	return s, n, obs, done
}

// The pong to the node's first ping and the route request it triggers
// leave in one write; our own ping does not wait for anything.
func TestSession_AnswerToOnePacketIsOneWrite(t *testing.T) {
	opts := Options{NetworkName: "n", NetworkSecret: "s", Samples: 1, Interval: time.Second, PingTimeout: time.Second,
		HandshakeTimeout: time.Second, RouteWait: time.Second, ForeignWait: -1}
	s, node, _, done := startPipeSession(t, opts)
	go func() {
		node.c.Write(node.frame(0, wire.TypeHandShake, wire.AppendHandshake(nil, node.peer, "n", wire.Digest("n", "s"))))
		node.c.Write(node.frame(s.myID, wire.TypePing, wire.PingPayload(0)))
	}()
	if _, got := node.writes(); len(got) != 1 || got[0] != wire.TypePing {
		t.Fatalf("after the reply: %v, want our ping alone", got)
	}
	if _, got := node.writes(); len(got) != 2 || got[0] != wire.TypePong || got[1] != wire.TypeRPCReq {
		t.Fatalf("answer to the node's ping: %v in one write, want [pong, route request]", got)
	}
	node.c.Close()
	<-done
}

// When one read brings the node's reply and its first ping, our ping,
// our pong and the route request leave in one write: the node never has
// two of our segments to acknowledge at once. The ping is stamped as
// that write leaves, not when it was queued.
func TestSession_PacketsOfOneReadAreAnsweredInOneWrite(t *testing.T) {
	const stall = 60 * time.Millisecond
	opts := Options{NetworkName: "n", NetworkSecret: "s", Samples: 1, Interval: time.Second, PingTimeout: time.Second,
		HandshakeTimeout: time.Second, RouteWait: time.Second, ForeignWait: -1,
		// Handling the node's ping, after our ping is queued, takes a while.
		OnRecv: func(pkt []byte) {
			if h, _, err := wire.ParsePacket(pkt); err == nil && h.Type == wire.TypePing {
				time.Sleep(stall)
			}
		}}
	s, node, obs, done := startPipeSession(t, opts)
	go node.c.Write(append(node.frame(0, wire.TypeHandShake, wire.AppendHandshake(nil, node.peer, "n", wire.Digest("n", "s"))),
		node.frame(s.myID, wire.TypePing, wire.PingPayload(0))...))
	pkts, got := node.writes()
	if len(got) != 3 || got[0] != wire.TypePing || got[1] != wire.TypePong || got[2] != wire.TypeRPCReq {
		t.Fatalf("answer to the reply and the node's ping: %v in one write, want [ping, pong, route request]", got)
	}
	pong := append([]byte(nil), pkts[0]...)
	pong[8] = byte(wire.TypePong)
	node.c.Write(wire.AppendTCPFrame(nil, pong))
	node.c.Close()
	<-done
	if len(obs.SamplesUS) != 1 {
		t.Fatalf("samples %v, want one", obs.SamplesUS)
	}
	if rtt := time.Duration(obs.SamplesUS[0]) * time.Microsecond; rtt >= stall {
		t.Fatalf("rtt %v counts the %v the ping waited in the batch", rtt, stall)
	}
}
