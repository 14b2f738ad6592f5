package easytiertest

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier/wire"
	"github.com/neouptime/neo-uptime-node/probe/internal/rxstamp"
)

// RelayFaults selects what a UDPRelay does to the node's datagrams on
// their way back to the prober.
type RelayFaults struct {
	Duplicate   bool // send every datagram twice (both directions)
	Reorder     bool // swap each pair of consecutive node datagrams
	DropPongsOf int  // drop every n-th Pong from the node (0: none)
	// DropProberHandshakes and DropNodeHandshakes drop the first n
	// HandShake packets from the prober and from the node.
	DropProberHandshakes int
	DropNodeHandshakes   int
	// Through, when set, is handed every datagram in both directions
	// instead of it being sent: it calls send, now or later and from any
	// goroutine, or drops the datagram (benchmarks delay and lose them).
	// b is the relay's own copy; arrived is when the kernel received it
	// (its receive stamp where the platform has one, else the read time),
	// so a delay counted from it leaves out the relay's own wake-up.
	Through func(b []byte, arrived time.Time, send func([]byte))
}

// UDPRelay sits between a prober and a node's UDP listener on loopback.
type UDPRelay struct {
	ln     *net.UDPConn
	up     *net.UDPAddr
	faults RelayFaults
	mu     sync.Mutex
	conns  map[string]*net.UDPConn
	wg     sync.WaitGroup
}

// StartUDPRelay relays to upstream ("127.0.0.1:port") with the faults.
func StartUDPRelay(upstream string, faults RelayFaults) (*UDPRelay, error) {
	up, err := net.ResolveUDPAddr("udp", upstream)
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	rxstamp.Enable(ln)
	r := &UDPRelay{ln: ln, up: up, faults: faults, conns: map[string]*net.UDPConn{}}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

// RelayTo starts a relay to the node at udpURL ("udp://host:port") for
// a test, which it fails if the relay cannot start, and closes the relay
// when the test ends.
func RelayTo(t testing.TB, udpURL string, faults RelayFaults) *UDPRelay {
	t.Helper()
	r, err := StartUDPRelay(strings.TrimPrefix(udpURL, "udp://"), faults)
	if err != nil {
		t.Fatalf("starting the udp relay: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// URL is the relay's udp:// address.
func (r *UDPRelay) URL() string { return "udp://" + r.ln.LocalAddr().String() }

// Close stops the relay.
func (r *UDPRelay) Close() {
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *UDPRelay) serve() {
	defer r.wg.Done()
	buf, oob := make([]byte, 65536), make([]byte, rxstamp.OOBSize)
	proberHandshakes := 0
	for {
		n, oobn, _, from, err := r.ln.ReadMsgUDP(buf, oob)
		if err != nil {
			return
		}
		arrived := rxstamp.Arrival(rxstamp.Parse(oob[:oobn]))
		if t, ok := packetType(buf[:n]); ok && t == wire.TypeHandShake && proberHandshakes < r.faults.DropProberHandshakes {
			proberHandshakes++
			continue
		}
		r.mu.Lock()
		c := r.conns[from.String()]
		if c == nil {
			if c, err = net.DialUDP("udp", nil, r.up); err != nil {
				r.mu.Unlock()
				continue
			}
			rxstamp.Enable(c)
			r.conns[from.String()] = c
			r.wg.Add(1)
			go r.back(c, from)
		}
		r.mu.Unlock()
		r.pass(buf[:n], arrived, func(b []byte) {
			c.Write(b)
			if r.faults.Duplicate {
				c.Write(b)
			}
		})
	}
}

// pass sends b, through the Through hook when there is one.
func (r *UDPRelay) pass(b []byte, arrived time.Time, send func([]byte)) {
	if r.faults.Through == nil {
		send(b)
		return
	}
	r.faults.Through(append([]byte(nil), b...), arrived, send)
}

// back relays the node's datagrams to the prober, applying the faults.
func (r *UDPRelay) back(c *net.UDPConn, to *net.UDPAddr) {
	defer r.wg.Done()
	buf, oob := make([]byte, 65536), make([]byte, rxstamp.OOBSize)
	var held []byte
	pongs, handshakes := 0, 0
	arrived := time.Now()
	send := func(b []byte) {
		r.pass(b, arrived, func(b []byte) {
			r.ln.WriteToUDP(b, to)
			if r.faults.Duplicate {
				r.ln.WriteToUDP(b, to)
			}
		})
	}
	for {
		if held != nil {
			// A lone datagram is not held forever: the prober may be
			// waiting for it (the SACK, the handshake reply).
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		} else {
			c.SetReadDeadline(time.Time{})
		}
		n, oobn, _, _, err := c.ReadMsgUDP(buf, oob)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			arrived = time.Now()
			send(held)
			held = nil
			continue
		}
		if err != nil {
			return
		}
		arrived = rxstamp.Arrival(rxstamp.Parse(oob[:oobn]))
		d := append([]byte(nil), buf[:n]...)
		t, ok := packetType(d)
		if ok && t == wire.TypeHandShake && handshakes < r.faults.DropNodeHandshakes {
			handshakes++
			continue
		}
		if ok && t == wire.TypePong {
			pongs++
			if r.faults.DropPongsOf > 0 && pongs%r.faults.DropPongsOf == 0 {
				continue
			}
		}
		if r.faults.Reorder {
			if held == nil {
				held = d
				continue
			}
			send(d)
			send(held)
			held = nil
			continue
		}
		send(d)
	}
}

// packetType is the EasyTier packet type a data datagram carries; false
// for SYN/SACK and anything malformed.
func packetType(d []byte) (wire.PacketType, bool) {
	_, typ, body, err := wire.ParseUDP(d)
	if err != nil || typ != wire.UDPData || len(body) <= 8 {
		return 0, false
	}
	return wire.PacketType(body[8]), true
}
