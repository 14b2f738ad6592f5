package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/neouptime/neo-uptime-node/probe"
	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
)

// The floor: what the job's own traffic costs on this machine with no
// EasyTier in it at all. 1,000 concurrent loopback TCP exchanges carry the
// segments a probe does against the fake node, in the same order, as bare
// 64-byte messages:
//
//	client → handshake;         server → handshake reply, then its ping
//	client → ping               server → pong, after the nodes' delay
//	client → pong to its ping   client → route request
//	server → route push         client → push acknowledgement
//
// then close; and as each exchange ends, its HTTP PUT to a loopback
// backend, 64 at a time over keep-alive connections, as the job's report
// pass does beside its probes. The client does each the cheapest way:
// what is due after a read leaves in one write when it is about to wait
// (as the session batches), the PUTs are bare HTTP/1.1 written and
// read on the reporting goroutine (bareReporter), and the descriptor
// table is grown once before the sockets need it, as the job's runner
// does (probe.ReserveDescriptors).
// The server halves run in this process, as the fake nodes and backend do;
// the client runs in its own, as the job does. A job cannot beat it; the
// gap between the two is what the prober, the HTTP client, the JSON and
// the state add.

const floorMsg = 64

// Message kinds, the first byte of each floor message.
const (
	fHandshake byte = iota
	fReply
	fNodePing
	fPing
	fPong
	fNodePong
	fRouteReq
	fRoutePush
	fAck
)

// floorServe runs 40 listeners on 127.0.1.x answering the floor's
// exchanges and a loopback backend, and returns the listeners' addresses,
// the backend's URL and a stop function.
func floorServe(delay time.Duration) (addrs []string, backend string, reports *atomic.Int64, stop func()) {
	var ls []net.Listener
	for i := 0; i < 40; i++ {
		l, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", fmt.Sprintf("127.0.1.%d:0", i+2))
		if err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
		ls, addrs = append(ls, l), append(addrs, l.Addr().String())
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go floorServeConn(c, delay)
			}
		}()
	}
	reports = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reports.Add(1)
		acceptReport(w, r)
	}))
	return addrs, srv.URL, reports, func() {
		for _, l := range ls {
			l.Close()
		}
		srv.Close()
	}
}

// floorServeConn is the server side of one exchange: answers as the fake
// node does, one write per message, the pong after delay.
func floorServeConn(c net.Conn, delay time.Duration) {
	defer c.Close()
	var wmu sync.Mutex
	send := func(kind byte) {
		b := make([]byte, floorMsg)
		b[0] = kind
		wmu.Lock()
		c.Write(b)
		wmu.Unlock()
	}
	var pending sync.WaitGroup
	defer pending.Wait()
	b := make([]byte, floorMsg)
	for {
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		switch b[0] {
		case fHandshake:
			send(fReply)
			send(fNodePing)
		case fPing:
			pending.Add(1)
			time.AfterFunc(delay, func() { send(fPong); pending.Done() })
		case fRouteReq:
			send(fRoutePush)
		}
	}
}

// floorClient is the client half, run in a child process: n concurrent
// exchanges, then the report pass. It prints its own wall time, the slowest
// ping's round trip (floorExchange) and its CPU, in seconds.
func floorClient(addrs []string, backend string, n int) {
	if path := os.Getenv("FLOOR_CPUPROFILE"); path != "" { // to hold against the binary's NEO_DEBUG_CPUPROFILE
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	cpu0 := selfCPU()
	start := time.Now()
	// As the job's runner does: the descriptor table grown once, not
	// socket by socket through four RCU grace periods.
	defer probe.ReserveDescriptors(n)()
	var wg sync.WaitGroup
	var failures atomic.Int64
	var mu sync.Mutex
	var slowest time.Duration
	done := make(chan int, n) // exchanges to report, as they end
	var reporters sync.WaitGroup
	host := strings.TrimPrefix(backend, "http://")
	for range 64 {
		reporters.Add(1)
		go func() {
			defer reporters.Done()
			var rc *bareReporter
			for i := range done {
				var err error
				if rc == nil {
					rc, err = dialBare(host)
				}
				if err == nil {
					err = rc.put(i + 1)
				}
				if err != nil {
					if failures.Add(1) == 1 {
						fmt.Fprintln(os.Stderr, "floor report failed:", err)
					}
					if rc != nil {
						rc.c.Close()
						rc = nil
					}
				}
			}
			if rc != nil {
				rc.c.Close()
			}
		}()
	}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rtt, err := floorExchange(addrs[i%len(addrs)])
			if err != nil {
				if failures.Add(1) == 1 {
					fmt.Fprintln(os.Stderr, "floor exchange failed:", err)
				}
				return
			}
			mu.Lock()
			slowest = max(slowest, rtt)
			mu.Unlock()
			done <- i
		}(i)
	}
	wg.Wait()
	close(done)
	reporters.Wait()
	el := time.Since(start)
	fmt.Printf("%f %f %f %d\n", el.Seconds(), slowest.Seconds(), (selfCPU() - cpu0).Seconds(), failures.Load())
}

// bareReporter sends the floor's reports as bare HTTP/1.1 on one
// keep-alive connection: the request's bytes written at once (the
// headers the job sends), the answer's head read line by line for its
// length and the body skipped. No client library does less.
type bareReporter struct {
	c    net.Conn
	br   *bufio.Reader
	host string
	req  []byte
}

func dialBare(host string) (*bareReporter, error) {
	c, err := (&net.Dialer{KeepAlive: -1}).Dial("tcp", host)
	if err != nil {
		return nil, err
	}
	return &bareReporter{c: c, br: bufio.NewReaderSize(c, 4<<10), host: host}, nil
}

func (r *bareReporter) put(id int) error {
	body := fmt.Sprintf(`{"id":%d,"status":"online","response_time":20,"peer_count":1}`, id)
	r.req = fmt.Appendf(r.req[:0], "PUT /nodes/status HTTP/1.1\r\nHost: %s\r\nUser-Agent: neo-uptime-node/floor\r\n"+
		"Content-Length: %d\r\nAccept: application/json\r\nContent-Type: application/json\r\nX-Api-Key: bench\r\n\r\n%s",
		r.host, len(body), body)
	if _, err := r.c.Write(r.req); err != nil {
		return err
	}
	length := -1
	for first := true; ; first = false {
		line, err := r.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if first {
			if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
				return fmt.Errorf("answer %q", line)
			}
			continue
		}
		if len(line) <= 2 { // the blank line ending the head
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && strings.EqualFold(string(k), "Content-Length") {
			length, err = strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				return err
			}
		}
	}
	if length < 0 {
		return fmt.Errorf("answer without Content-Length")
	}
	_, err := r.br.Discard(length)
	return err
}

// floorExchange is one probe-shaped exchange; it returns the ping's round
// trip, timed as the prober times it: from just before the ping's write to
// the kernel's receive stamp of the pong (a read time would add the wait
// for a goroutine to run, which with a thousand of them is most of it).
func floorExchange(addr string) (time.Duration, error) {
	d := net.Dialer{KeepAlive: -1}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// What is due goes out in one write when the exchange is about to
	// wait, as the session batches its writes; a ping is timed from that
	// write.
	var out []byte
	var pingAt time.Time
	pingHeld := false
	send := func(kind byte) {
		out = append(out, make([]byte, floorMsg)...)
		out[len(out)-floorMsg] = kind
		pingHeld = pingHeld || kind == fPing
	}
	flush := func() error {
		if pingHeld {
			pingAt, pingHeld = time.Now(), false
		}
		_, err := c.Write(out)
		out = out[:0]
		return err
	}
	r, err := newStampedMsgs(c.(*net.TCPConn))
	if err != nil {
		return 0, err
	}
	send(fHandshake)
	var rtt time.Duration
	var asked, pushed bool
	b := make([]byte, floorMsg)
	for rtt == 0 || !pushed {
		if len(out) > 0 && !r.buffered() {
			if err := flush(); err != nil {
				return 0, err
			}
		}
		at, err := r.next(b)
		if err != nil {
			return 0, err
		}
		switch b[0] {
		case fReply:
			send(fPing)
		case fNodePing:
			send(fNodePong)
			if !asked {
				asked = true
				send(fRouteReq)
			}
		case fRoutePush:
			pushed = true
			send(fAck)
		case fPong:
			rtt = at.Sub(pingAt)
		}
	}
	if len(out) > 0 {
		if err := flush(); err != nil {
			return 0, err
		}
	}
	return rtt, nil
}

// stampedMsgs reads the floor's messages in reads of up to 512 bytes, as
// the prober's session does, each message with the arrival of the read
// that completed it (the kernel stamps a read with its last segment's).
type stampedMsgs struct {
	rc     syscall.RawConn
	recv   func(fd uintptr) bool // bound once: no closure per read
	buf    [512]byte
	have   int
	oob    [easytiertest.RxStampOOBSize]byte
	n      int
	oobn   int
	rerr   error
	lastAt time.Time // arrival of the last read
}

func newStampedMsgs(c *net.TCPConn) (*stampedMsgs, error) {
	easytiertest.EnableRxStamps(c)
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &stampedMsgs{rc: rc}
	s.recv = func(fd uintptr) bool {
		for {
			s.n, s.oobn, _, _, s.rerr = syscall.Recvmsg(int(fd), s.buf[s.have:], s.oob[:], 0)
			if s.rerr != syscall.EINTR {
				return s.rerr != syscall.EAGAIN
			}
		}
	}
	return s, nil
}

// buffered reports whether a whole message is read and waiting.
func (s *stampedMsgs) buffered() bool { return s.have >= floorMsg }

// next copies the next message into msg and says when it arrived.
func (s *stampedMsgs) next(msg []byte) (time.Time, error) {
	var at time.Time
	for s.have < floorMsg {
		err := s.rc.Read(s.recv)
		if err == nil {
			err = s.rerr
		}
		if err == nil && s.n == 0 {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return time.Time{}, err
		}
		s.have += s.n
		at = easytiertest.RxArrival(s.oob[:s.oobn])
	}
	if at.IsZero() { // already read with an earlier message
		at = s.lastAt
	}
	s.lastAt = at
	copy(msg, s.buf[:floorMsg])
	s.have = copy(s.buf[:], s.buf[floorMsg:s.have])
	return at, nil
}

func floorTable(runs int, delay time.Duration) {
	addrs, backend, reports, stop := floorServe(delay)
	defer stop()
	fmt.Printf("### Floor: the job's traffic alone — 1000 bare TCP exchanges with a probe's 9 messages (the pong after %v), each followed by its HTTP PUT as it ends (64 at a time); client in its own process\n\n", delay)
	fmt.Println("| exchanges | wall s | wall − slowest RTT ms | wall − delay ms | client CPU s | servers + backend CPU s | failed | reported |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|")
	var wall, over, overDelay, cpu, srvCPU, failed, reported stat
	for r := 0; r < runs; r++ {
		// Wall time from outside, process start and exit included, as
		// the job's is.
		reports.Store(0)
		cpu0 := selfCPU()
		t0 := time.Now()
		out, err := exec.Command(os.Args[0], "-floor-client", strings.Join(addrs, ","), "-floor-backend", backend).Output()
		w := time.Since(t0).Seconds()
		srvCPU = append(srvCPU, (selfCPU() - cpu0).Seconds())
		var inner, slow, c, f float64
		if _, serr := fmt.Sscan(string(out), &inner, &slow, &c, &f); err != nil || serr != nil {
			fmt.Fprintln(os.Stderr, "floor client:", err, serr)
			continue
		}
		wall, over, cpu, failed = append(wall, w), append(over, (w-slow)*1000), append(cpu, c), append(failed, f)
		reported = append(reported, float64(reports.Load()))
		overDelay = append(overDelay, w*1000-float64(delay.Milliseconds()))
	}
	fmt.Printf("| 1000 | %s | %s | %s | %s | %s | %s | %s |\n\n", wall, over, overDelay, cpu, srvCPU, failed, reported)
	vsFloor.floorOver, vsFloor.floorCPU = over, cpu
}
