package easytier

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/internal/rxstamp"
)

// The kernel stamps received packets only while some socket wants it, and
// switches that on and off by patching its code (a deferred static key):
// a probe's socket closing and the next one opening would pay for that
// every time, ~40 µs of CPU per probe in a loop of probes. So while probes
// run, and for stampLinger after the last, one socket of ours keeps
// stamping on: a run switches it once.
var keeper struct {
	sync.Mutex
	users int
	fd    int // the socket keeping stamping on, if open
	open  bool
	gen   int // bumped when the last user leaves; a stale linger timer sees it
}

const stampLinger = time.Second

// holdRxStamping keeps kernel receive stamping on until release is called
// (and stampLinger after the last release).
func holdRxStamping() (release func()) {
	keeper.Lock()
	defer keeper.Unlock()
	keeper.users++
	if !keeper.open {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
		if err == nil {
			if syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1) == nil {
				keeper.fd, keeper.open = fd, true
			} else {
				syscall.Close(fd)
			}
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			keeper.Lock()
			defer keeper.Unlock()
			keeper.users--
			if keeper.users > 0 || !keeper.open {
				return
			}
			keeper.gen++
			gen := keeper.gen
			time.AfterFunc(stampLinger, func() {
				keeper.Lock()
				defer keeper.Unlock()
				if keeper.users == 0 && keeper.open && keeper.gen == gen {
					syscall.Close(keeper.fd)
					keeper.open = false
				}
			})
		})
	}
}

// keeperOpen reports whether the keeper's socket is open (tests count
// descriptors).
func keeperOpen() bool {
	keeper.Lock()
	defer keeper.Unlock()
	return keeper.open
}

// stampedConn is a TCP conn whose reads keep the kernel's receive stamp
// of the last data they returned. Reads go through the runtime poller
// (RawConn.Read), so deadlines and Close work as on the plain conn.
type stampedConn struct {
	net.Conn
	rc   syscall.RawConn
	oob  [rxstamp.OOBSize]byte
	last time.Time // kernel stamp of the last read; zero if none
	// One read's arguments and results, so that recv, bound once, does
	// not allocate a closure per read.
	p       []byte
	n, oobn int
	rerr    error
	recv    func(fd uintptr) bool
}

// newStampedConn wraps c, or returns c itself where stamps are not
// available (or c has them already).
func newStampedConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || !rxstamp.Enable(tc) {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return newStamped(c, rc)
}

// newStamped wraps c, whose socket (rc) has stamping on.
func newStamped(c net.Conn, rc syscall.RawConn) *stampedConn {
	s := &stampedConn{Conn: c, rc: rc}
	s.recv = s.recvmsg
	return s
}

// recvmsg is one attempt for the poller: false means "not ready, wait".
func (s *stampedConn) recvmsg(fd uintptr) bool {
	for {
		s.n, s.oobn, _, _, s.rerr = syscall.Recvmsg(int(fd), s.p, s.oob[:], 0)
		if s.rerr != syscall.EINTR {
			return s.rerr != syscall.EAGAIN
		}
	}
}

func (s *stampedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.p = p
	err := s.rc.Read(s.recv)
	s.p = nil
	n, oobn, rerr := s.n, s.oobn, s.rerr
	if err == nil && rerr != nil {
		err = os.NewSyscallError("recvmsg", rerr)
	}
	if err != nil {
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
	}
	if n == 0 {
		return 0, io.EOF
	}
	// Data without a stamp (received before stamping was on) must not
	// keep an older read's stamp: that would make it look early.
	s.last = rxstamp.Parse(s.oob[:oobn])
	return n, nil
}

// lastRx is the kernel stamp of the data the last read returned.
func (s *stampedConn) lastRx() time.Time { return s.last }

// readUDPStamped reads one datagram with its kernel receive stamp.
func readUDPStamped(c *net.UDPConn, p []byte, oob []byte) (int, time.Time, error) {
	n, oobn, _, _, err := c.ReadMsgUDPAddrPort(p, oob) // no address allocated
	if err != nil {
		return n, time.Time{}, err
	}
	return n, rxstamp.Parse(oob[:oobn]), nil
}
