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

// The pong to the node's first ping and the route request it triggers
// leave in one write; our own ping does not wait for anything.
func TestSession_AnswerToOnePacketIsOneWrite(t *testing.T) {
	ours, node := net.Pipe() // a pipe read returns at most one write
	defer node.Close()
	opts := Options{NetworkName: "n", NetworkSecret: "s", Samples: 1, Interval: time.Second, PingTimeout: time.Second,
		HandshakeTimeout: time.Second, RouteWait: time.Second, ForeignWait: -1}
	var obs Observation
	s := newSession(newTCPConn(t.Context(), ours), opts, &obs)
	done := make(chan error, 1)
	go func() { done <- s.run(t.Context()); s.close() }()

	buf := make([]byte, 4096)
	read := func() [][]byte { // the frames of one write
		t.Helper()
		node.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := node.Read(buf)
		if err != nil {
			t.Fatalf("node read: %v", err)
		}
		var frames [][]byte
		for b := buf[:n]; len(b) >= 4; {
			l, err := wire.TCPFrameLen([4]byte(b[:4]))
			if err != nil || 4+l > len(b) {
				t.Fatalf("a write that is not whole frames: %x", buf[:n])
			}
			frames, b = append(frames, b[4:4+l]), b[4+l:]
		}
		return frames
	}
	types := func(frames [][]byte) []wire.PacketType {
		var ts []wire.PacketType
		for _, f := range frames {
			h, _, err := wire.ParsePacket(f)
			if err != nil {
				t.Fatalf("parsing our packet: %v", err)
			}
			ts = append(ts, h.Type)
		}
		return ts
	}
	const nodeID = 77
	if got := types(read()); len(got) != 1 || got[0] != wire.TypeHandShake {
		t.Fatalf("first write: %v, want the handshake", got)
	}
	digest := wire.Digest("n", "s")
	go func() {
		node.Write(wire.AppendTCPFrame(nil, wire.AppendPacket(nil, nodeID, 0, wire.TypeHandShake, wire.AppendHandshake(nil, nodeID, "n", digest))))
		node.Write(wire.AppendTCPFrame(nil, wire.AppendPacket(nil, nodeID, s.myID, wire.TypePing, wire.PingPayload(0))))
	}()
	if got := types(read()); len(got) != 1 || got[0] != wire.TypePing {
		t.Fatalf("after the reply: %v, want our ping alone", got)
	}
	if got := types(read()); len(got) != 2 || got[0] != wire.TypePong || got[1] != wire.TypeRPCReq {
		t.Fatalf("answer to the node's ping: %v in one write, want [pong, route request]", got)
	}
	node.Close()
	<-done
}
