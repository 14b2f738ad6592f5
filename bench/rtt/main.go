// Command rtt measures how true neo-uptime-node's RTT is. A real EasyTier
// node (easytier-pyo3) sits behind a user-space delaying proxy — Shopify's
// toxiproxy (its Go module, with a latency toxic of ours that does not
// oversleep: precise.go) for tcp, ws and wss (TLS passes through it as
// bytes), a small delaying relay for udp —
// and each probe's figure is compared with the injected truth (delay plus
// the loopback baseline: our figure through the same proxy with a small
// delay, less that delay, so that the proxy's own wake-up is left out of
// it as it is out of every delayed case) and with
// the node's own latency_us for the very same connection.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/neouptime/neo-uptime-node/bench/internal/stats"
	"github.com/neouptime/neo-uptime-node/probe/easytier"
	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
)

const (
	network = "rtt-net"
	secret  = "rtt-secret"
	baseMS  = 4 // the round-trip delay the baseline is taken through
)

func main() {
	runs := flag.Int("runs", 3, "runs per case")
	samples := flag.Int("samples", 10, "pings per probe")
	transports := flag.String("transports", "tcp,ws,wss,udp", "transports to measure")
	only := flag.String("cases", "", "only the cases whose name starts with one of these (comma-separated), e.g. \"50 ms\"")
	withLegs := flag.Bool("legs", false, "udp: print each case's round trips split into legs on stderr (legs.go)")
	flag.Parse()
	if *withLegs {
		trace = newLegs()
	}
	py := easytiertest.Python()
	if py == "" {
		fmt.Fprintln(os.Stderr, "rtt: needs the easytier-pyo3 venv (make deps)")
		os.Exit(1)
	}
	port, err := easytiertest.FreePort()
	if err != nil {
		panic(err)
	}
	node, err := easytiertest.StartRealProcess(py, easytiertest.RealConfig{Port: port, NetworkName: network, NetworkSecret: secret, Hostname: "rtt-node"}, io.Discard)
	if err != nil {
		panic(err)
	}
	defer node.Stop()

	tox := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	tcpEcho, udpEcho := startEchoes()
	type tcase struct {
		name          string
		delayMS       int // injected round trip
		jitterMS      int
		loss          float64
		transportOnly string
	}
	cases := []tcase{{"1 ms", 1, 0, 0, ""}, {"10 ms", 10, 0, 0, ""}, {"50 ms", 50, 0, 0, ""}, {"200 ms", 200, 0, 0, ""},
		{"50 ms ± 10 jitter", 50, 10, 0, ""}, {"10 ms, 10% loss", 10, 0, 0.10, "udp"}}
	fmt.Printf("### RTT accuracy against a real EasyTier node (%s) behind a delaying proxy\n\n", node.Version)
	fmt.Printf("%d pings 300 ms apart per probe; truth = injected RTT + loopback baseline (our figure through the same proxy with a %d ms delay, less %d ms). ", *samples, baseMS, baseMS)
	fmt.Println("Errors are medians over runs of |figure − truth|; the node's figure is its own latency_us for the prober's connection.")
	fmt.Println()
	fmt.Println("The echo column calibrates the injector: the median RTT of 16-byte messages to an echo server behind the same proxy and toxic,")
	fmt.Println("i.e. what the delayed link really does; 'vs echo' is our error against it.")
	fmt.Println()
	fmt.Println("| transport | case | truth ms | echo ms | ours ms | node's ms | our error ms | node's error ms | our error vs echo ms | target 0.3 ms + 1 % (vs truth / vs echo) | ours ≤ node's + 0.05 ms |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|:---:|:---:|")
	for _, tr := range strings.Split(*transports, ",") {
		// The node listens on tcp and udp at port, ws at port+1 and
		// wss at port+2 (etnode.py).
		upstream := fmt.Sprintf("127.0.0.1:%d", port+map[string]int{"ws": 1, "wss": 2}[tr])
		var proxyAddr, echoAddr string
		var setDelay func(delayMS, jitterMS int, loss float64)
		if tr == "udp" {
			relay, shaper, err := shapedRelay(upstream)
			if err != nil {
				panic(err)
			}
			shaper.traced = true
			defer relay.Close()
			erelay, eshaper, err := shapedRelay(udpEcho)
			if err != nil {
				panic(err)
			}
			defer erelay.Close()
			proxyAddr, echoAddr = strings.TrimPrefix(relay.URL(), "udp://"), strings.TrimPrefix(erelay.URL(), "udp://")
			setDelay = func(d, j int, loss float64) { shaper.set(d, j, loss); eshaper.set(d, j, 0) }
		} else {
			p := toxiproxy.NewProxy(tox, "et-"+tr, "127.0.0.1:0", upstream)
			e := toxiproxy.NewProxy(tox, "echo-"+tr, "127.0.0.1:0", tcpEcho)
			for _, x := range []*toxiproxy.Proxy{p, e} {
				if err := x.Start(); err != nil {
					panic(err)
				}
				defer x.Stop()
			}
			proxyAddr, echoAddr = p.Listen, e.Listen
			setDelay = func(delayMS, jitterMS int, _ float64) {
				for _, x := range []*toxiproxy.Proxy{p, e} {
					x.Toxics.ResetToxics(context.Background())
					if delayMS == 0 {
						continue
					}
					for _, dir := range []string{"upstream", "downstream"} {
						j := fmt.Sprintf(`{"type":"precise_latency","stream":%q,"attributes":{"latency_us":%d,"jitter_us":%d}}`, dir, delayMS*500, jitterMS*500)
						if _, err := x.Toxics.AddToxicJson(strings.NewReader(j)); err != nil {
							panic(err)
						}
					}
				}
			}
		}
		url := tr + "://" + proxyAddr
		if strings.HasPrefix(tr, "ws") {
			url += "/"
		}
		// The baseline is taken through a small delay rather than none:
		// a proxy without a delay forwards each packet when it wakes up
		// to read it (~0.05 ms per pass here), a cost the delayed cases
		// do not have (their delay runs from the packet's arrival), and
		// that would count in the truth.
		setDelay(baseMS, 0, 0)
		var base []float64
		for r := 0; r < *runs; r++ {
			if ours, _ := probeOnce(node, url, *samples); !math.IsNaN(ours) {
				base = append(base, ours-baseMS)
			}
		}
		baseline := stats.Median(base)
		if trace != nil && tr == "udp" {
			trace.print(tr, "baseline (4 ms)")
		}
		for _, c := range cases {
			if c.transportOnly != "" && c.transportOnly != tr || !selected(c.name, *only) {
				continue
			}
			setDelay(c.delayMS, c.jitterMS, c.loss)
			truth := baseline + float64(c.delayMS)
			echo := echoRTT(tr, echoAddr, 20)
			var oursErr, nodeErr, oursV, nodeV, echoErr []float64
			failed := 0
			for r := 0; r < *runs; r++ {
				ours, nodeMS := probeOnce(node, url, *samples)
				if math.IsNaN(ours) {
					failed++ // no measurement (a lost handshake on the lossy link): not an error of 100 %
					continue
				}
				oursV, oursErr = append(oursV, ours), append(oursErr, math.Abs(ours-truth))
				echoErr = append(echoErr, math.Abs(ours-echo))
				if nodeMS > 0 {
					nodeV, nodeErr = append(nodeV, nodeMS), append(nodeErr, math.Abs(nodeMS-truth))
				}
			}
			target := 0.3 + 0.01*truth
			// The targets apply to the fixed-delay rows; jitter and loss
			// rows show the spread and say n/a rather than yes or no.
			spreadOnly := c.jitterMS > 0 || c.loss > 0
			ok := func(b bool) string {
				switch {
				case spreadOnly:
					return "n/a"
				case b:
					return "yes"
				}
				return "**no**"
			}
			name := c.name
			if failed > 0 {
				name += fmt.Sprintf(" (%d of %d probes failed)", failed, *runs)
			}
			fmt.Printf("| %s | %s | %.2f | %.2f | %s | %s | %.3f | %s | %.3f | %s / %s | %s |\n", tr, name, truth, echo, stats.SpreadFixed(oursV, 2), stats.SpreadFixed(nodeV, 2),
				stats.Median(oursErr), fmtMaybe(nodeErr), stats.Median(echoErr),
				ok(stats.Median(oursErr) <= target), ok(stats.Median(echoErr) <= 0.3+0.01*echo),
				ok(len(nodeErr) == 0 || stats.Median(oursErr) <= stats.Median(nodeErr)+0.05))
			if trace != nil && tr == "udp" {
				trace.print(tr, c.name)
			}
		}
		setDelay(0, 0, 0)
	}
	fmt.Println()
	fmt.Println("(Jitter and loss rows are shown for spread, n/a in the target columns; the targets apply to the fixed-delay rows.)")
	fmt.Println()
}

// selected says whether a case is among the comma-separated name prefixes
// of -cases (all when empty).
func selected(name, only string) bool {
	if only == "" {
		return true
	}
	for _, p := range strings.Split(only, ",") {
		if strings.HasPrefix(name, strings.TrimSpace(p)) {
			return true
		}
	}
	return false
}

// startEchoes runs a tcp and a udp echo server on loopback.
func startEchoes() (tcpAddr, udpAddr string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		panic(err)
	}
	go func() {
		b := make([]byte, 2048)
		for {
			n, from, err := u.ReadFromUDP(b)
			if err != nil {
				return
			}
			u.WriteToUDP(b[:n], from)
		}
	}()
	return l.Addr().String(), u.LocalAddr().String()
}

// echoRTT is the median round trip of n 16-byte messages through addr.
func echoRTT(tr, addr string, n int) float64 {
	network := "tcp"
	if tr == "udp" {
		network = "udp"
	}
	c, err := net.Dial(network, addr)
	if err != nil {
		return math.NaN()
	}
	defer c.Close()
	buf := make([]byte, 16)
	var rtts []float64
	for i := 0; i < n; i++ {
		c.SetDeadline(time.Now().Add(3 * time.Second))
		start := time.Now()
		if _, err := c.Write(buf); err != nil {
			break
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			continue // udp: a lost datagram
		}
		rtts = append(rtts, float64(time.Since(start).Microseconds())/1000)
		time.Sleep(20 * time.Millisecond)
	}
	return stats.Median(rtts)
}

func fmtMaybe(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", stats.Median(v))
}

// probeOnce probes through the proxy and, while the connection is still
// open, reads the node's own latency figure for it.
func probeOnce(node *easytiertest.RealNode, url string, samples int) (oursMS, nodeMS float64) {
	var myID uint32
	var once sync.Once
	idSeen := make(chan struct{})
	opts := easytier.Options{NetworkName: network, NetworkSecret: secret, Samples: samples, Interval: 300 * time.Millisecond,
		PingTimeout: 3 * time.Second, RouteWait: -1,
		OnSend: func(p []byte) {
			if trace != nil {
				trace.onSend(p)
			}
			once.Do(func() {
				myID = uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16 | uint32(p[3])<<24
				close(idSeen)
			})
		}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(samples)*300*time.Millisecond+10*time.Second)
	defer cancel()
	done := make(chan easytier.Observation, 1)
	if trace != nil {
		trace.start()
	}
	go func() {
		obs, err := easytier.Probe(ctx, url, opts)
		if err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
		}
		done <- obs
	}()
	<-idSeen
	// The node pings at 0 s, 1 s, 2 s …; read its figure near the end.
	time.Sleep(time.Duration(samples-1) * 300 * time.Millisecond)
	nodeMS = nodeLatency(node, myID)
	obs := <-done
	if trace != nil {
		trace.finish(obs.SamplesUS)
	}
	if len(obs.SamplesUS) == 0 {
		return math.NaN(), nodeMS
	}
	return float64(obs.LatencyUS()) / 1000, nodeMS
}

// nodeLatency reads latency_us of the node's connection to peer id.
func nodeLatency(node *easytiertest.RealNode, id uint32) float64 {
	var peers []struct {
		PeerID uint32 `json:"peer_id"`
		Conns  []struct {
			Stats struct {
				LatencyUS string `json:"latency_us"`
			} `json:"stats"`
		} `json:"conns"`
	}
	if err := node.Query("peers", &peers); err != nil {
		return 0
	}
	for _, p := range peers {
		if p.PeerID == id && len(p.Conns) > 0 {
			us, _ := strconv.ParseFloat(p.Conns[0].Stats.LatencyUS, 64)
			return us / 1000
		}
	}
	return 0
}

// udpShaper delays each datagram of a relay by half the round trip (plus
// jitter) and drops some: the Through hook of easytiertest's UDP relay.
type udpShaper struct {
	traced bool // the relay in front of the node (-legs), not the echo's
	mu     sync.Mutex
	delay  time.Duration
	jitter time.Duration
	loss   float64
}

func (s *udpShaper) set(delayMS, jitterMS int, loss float64) {
	s.mu.Lock()
	s.delay, s.jitter, s.loss = time.Duration(delayMS)*time.Millisecond/2, time.Duration(jitterMS)*time.Millisecond/2, loss
	s.mu.Unlock()
	if trace != nil && s.traced {
		trace.setHalf(s.delay)
	}
}

// through sends b after the one-way delay, unless it is "lost".
func (s *udpShaper) through(b []byte, arrived time.Time, send func([]byte)) {
	s.mu.Lock()
	d, j, loss := s.delay, s.jitter, s.loss
	s.mu.Unlock()
	if loss > 0 && rand.Float64() < loss {
		return
	}
	due := arrived.Add(oneWay(d, j))
	k, traced := legKey{}, false
	if trace != nil && s.traced {
		k, traced = trace.key(b)
		if traced {
			trace.note(k, arrived, false)
		}
	}
	go func() {
		waitUntil(due)
		if traced {
			trace.note(k, time.Now(), true)
		}
		send(b)
	}()
}

// shapedRelay starts a UDP relay to upstream whose datagrams the returned
// shaper delays.
func shapedRelay(upstream string) (*easytiertest.UDPRelay, *udpShaper, error) {
	s := &udpShaper{}
	r, err := easytiertest.StartUDPRelay(upstream, easytiertest.RelayFaults{Through: s.through})
	return r, s, err
}
