// Package easytiertest runs EasyTier nodes on loopback for tests: a fake
// node in Go whose behaviour can be chosen (healthy, or one of many faults)
// and, in realnode.go, a real node from the easytier-pyo3 package.
package easytiertest

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/neouptime/neo-uptime-node/probe/easytier/wire"
)

// Behavior selects how a fake node answers.
type Behavior int

// Behaviours of the fake node.
const (
	Healthy             Behavior = iota // full exchange, route push included
	AcceptSilence                       // accept, never send anything (tcp/ws); no SACK (udp)
	Reset                               // accept, then reset the connection
	Garbage                             // answer with random-looking bytes
	FrameTooShort                       // tcp frame length 4
	FrameTooLong                        // tcp frame length 5000
	SlowDrip                            // the handshake reply one byte every 200ms
	WrongSecret                         // reply with a zero digest, then close
	CloseAfterHandshake                 // valid reply, then close
	NoPong                              // valid reply, then silence
	UnknownTypes                        // healthy, with unknown packet types mixed in
	HugeRoute                           // healthy, route push split into 40 pieces
	TextMessage                         // ws only: a text message instead of the reply
)

// Fake is a fake EasyTier node on loopback speaking tcp, udp and ws.
type Fake struct {
	NetworkName   string
	NetworkSecret string
	Hostname      string
	Version       string // e.g. "2.6.4-fake0000"
	Foreign       []string
	Behavior      Behavior
	Delay         time.Duration // added before every pong
	RouteDelay    time.Duration // added before the route push (a real node's lost first push is retried after 3 s)
	Encrypt       string        // cipher for route pushes; "" sends plaintext
	ListenIP      string        // default 127.0.0.1; any 127.0.0.0/8 address works
	TLS           bool          // serve wss instead of ws (certificate: WSCertPEM)

	PeerID uint32
	tcp    net.Listener
	udp    *net.UDPConn
	ws     *httptest.Server
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[io.Closer]struct{}
	closed bool
}

// StartFake starts a fake node on 127.0.0.1 with random ports.
func StartFake(f *Fake) (*Fake, error) {
	if f.NetworkName == "" {
		f.NetworkName = "default"
	}
	if f.Version == "" {
		f.Version = "2.6.4-fake0000"
	}
	if f.Hostname == "" {
		f.Hostname = "fake-node"
	}
	if f.PeerID == 0 {
		f.PeerID = 0x0BADF00D
	}
	if f.ListenIP == "" {
		f.ListenIP = "127.0.0.1"
	}
	f.conns = map[io.Closer]struct{}{}
	var err error
	lc := net.ListenConfig{KeepAlive: -1} // probes are short; spare the setsockopt calls
	if f.tcp, err = lc.Listen(context.Background(), "tcp", net.JoinHostPort(f.ListenIP, "0")); err != nil {
		return nil, err
	}
	if f.udp, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(f.ListenIP)}); err != nil {
		f.tcp.Close()
		return nil, err
	}
	// One fake stands for hundreds of nodes in some tests, and their
	// handshakes arrive at once: the default 208 KiB receive buffer
	// dropped datagrams (UdpRcvbufErrors) with 300 udp probes. Up to
	// net.core.rmem_max; an error only leaves the default.
	_ = f.udp.SetReadBuffer(4 << 20)
	wsl, err := lc.Listen(context.Background(), "tcp", net.JoinHostPort(f.ListenIP, "0"))
	if err != nil {
		f.tcp.Close()
		f.udp.Close()
		return nil, err
	}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	f.ws = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		f.serve(&wsServerConn{c: c}, c.NetConn())
	}))
	f.ws.Listener.Close()
	f.ws.Listener = wsl
	if f.TLS {
		f.ws.StartTLS()
	} else {
		f.ws.Start()
	}
	f.wg.Add(2)
	go f.acceptTCP()
	go f.serveUDP()
	return f, nil
}

// TCPURL, UDPURL and WSURL address the fake node.
func (f *Fake) TCPURL() string { return "tcp://" + f.tcp.Addr().String() }
func (f *Fake) UDPURL() string { return "udp://" + f.udp.LocalAddr().String() }
func (f *Fake) WSURL() string {
	if f.TLS {
		return "wss://" + f.ws.Listener.Addr().String() + "/"
	}
	return "ws://" + f.ws.Listener.Addr().String() + "/"
}

// WSCertPEM is the wss certificate in PEM, for CA-verification tests. The
// httptest certificate is issued for 127.0.0.1 and "example.com".
func (f *Fake) WSCertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.ws.Certificate().Raw})
}

// Close stops the node and every connection it holds.
func (f *Fake) Close() {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.tcp.Close()
	f.udp.Close()
	f.ws.CloseClientConnections()
	f.ws.Close()
	f.wg.Wait()
}

func (f *Fake) track(c io.Closer) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Fake) untrack(c io.Closer) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

func (f *Fake) acceptTCP() {
	defer f.wg.Done()
	for {
		c, err := f.tcp.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.serve(&tcpServerConn{c: c, br: bufio.NewReaderSize(c, 512)}, c)
		}()
	}
}

// serverConn is the node side of one transport.
type serverConn interface {
	read() ([]byte, error)
	write(pkt []byte) error
	raw(b []byte) error // bytes exactly as given (faults)
}

// serve runs one connection according to f.Behavior.
func (f *Fake) serve(sc serverConn, c io.Closer) {
	if !f.track(c) {
		return
	}
	defer f.untrack(c)
	defer c.Close()
	switch f.Behavior {
	case AcceptSilence:
		_, _ = io.Copy(io.Discard, readerOf(sc))
		return
	case Reset:
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		return
	}
	first, err := sc.read()
	if err != nil {
		return
	}
	h, payload, err := wire.ParsePacket(first)
	if err != nil || h.Type != wire.TypeHandShake {
		return
	}
	hs, err := wire.ParseHandshake(payload)
	if err != nil {
		return
	}
	n := &nodeSession{f: f, sc: sc, peer: hs.PeerID, theirName: hs.NetworkName}
	n.run(hs)
}

// readerOf adapts a serverConn to an io.Reader that discards packets.
func readerOf(sc serverConn) io.Reader { return discardReader{sc} }

type discardReader struct{ sc serverConn }

func (d discardReader) Read(p []byte) (int, error) {
	if _, err := d.sc.read(); err != nil {
		return 0, err
	}
	return 0, nil
}

// tcpServerConn reads through a buffer, as a node's framed reader does:
// one read takes whatever has arrived, often several frames, instead of
// one read for each frame's length and another for its body.
type tcpServerConn struct {
	c  net.Conn
	br *bufio.Reader
	mu sync.Mutex
}

func (t *tcpServerConn) read() ([]byte, error) {
	var prefix [4]byte
	if _, err := io.ReadFull(t.br, prefix[:]); err != nil {
		return nil, err
	}
	n, err := wire.TCPFrameLen(prefix)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	_, err = io.ReadFull(t.br, b)
	return b, err
}

func (t *tcpServerConn) write(pkt []byte) error { return t.raw(wire.AppendTCPFrame(nil, pkt)) }

func (t *tcpServerConn) raw(b []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err := t.c.Write(b)
	return err
}

type wsServerConn struct {
	c  *websocket.Conn
	mu sync.Mutex
}

func (w *wsServerConn) read() ([]byte, error) {
	_, b, err := w.c.ReadMessage()
	return b, err
}

func (w *wsServerConn) write(pkt []byte) error { return w.raw(pkt) }

func (w *wsServerConn) raw(b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.c.WriteMessage(websocket.BinaryMessage, b)
}

func (w *wsServerConn) text(s string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.c.WriteMessage(websocket.TextMessage, []byte(s))
}

// le32 is a little-endian u32 helper for fault frames.
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
