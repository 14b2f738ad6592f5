package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// The floor: what 1,000 concurrent loopback TCP exchanges of a probe's
// shape cost on this machine with no EasyTier in them at all — connect,
// a 64-byte request and answer three times (the second answer after the
// fake nodes' delay, as a pong), close — between two processes, as the
// job and the fake nodes are. A probe phase cannot beat it; the gap
// between the two is what the prober itself adds.

const floorMsg = 64

// floorServe runs 40 listeners on 127.0.1.x answering the floor's
// exchanges, and returns their addresses and a stop function.
func floorServe(delay time.Duration) ([]string, func()) {
	var ls []net.Listener
	var addrs []string
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
				go func() {
					defer c.Close()
					b := make([]byte, floorMsg)
					for k := 0; k < 3; k++ {
						if _, err := io.ReadFull(c, b); err != nil {
							return
						}
						if k == 1 {
							time.Sleep(delay)
						}
						if _, err := c.Write(b); err != nil {
							return
						}
					}
				}()
			}
		}()
	}
	return addrs, func() {
		for _, l := range ls {
			l.Close()
		}
	}
}

// floorClient is the client half, run in a child process: n concurrent
// exchanges; it prints its wall time, the slowest delayed round trip and
// its CPU, in seconds.
func floorClient(addrs []string, n int) {
	cpu0 := selfCPU()
	start := time.Now()
	var wg sync.WaitGroup
	var failed sync.Map
	var mu sync.Mutex
	var slowest time.Duration // the delayed exchange's round trip, as a pong's
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d := net.Dialer{KeepAlive: -1}
			c, err := d.Dial("tcp", addrs[i%len(addrs)])
			if err != nil {
				failed.Store(i, err)
				return
			}
			defer c.Close()
			b := make([]byte, floorMsg)
			for k := 0; k < 3; k++ {
				t0 := time.Now()
				if _, err := c.Write(b); err != nil {
					failed.Store(i, err)
					return
				}
				if _, err := io.ReadFull(c, b); err != nil {
					failed.Store(i, err)
					return
				}
				if k == 1 {
					rtt := time.Since(t0)
					mu.Lock()
					slowest = max(slowest, rtt)
					mu.Unlock()
				}
			}
		}(i)
	}
	wg.Wait()
	el := time.Since(start)
	cpu := selfCPU() - cpu0
	failed.Range(func(k, v any) bool { fmt.Fprintln(os.Stderr, "floor exchange failed:", v); return false })
	fmt.Printf("%f %f %f\n", el.Seconds(), slowest.Seconds(), cpu.Seconds())
}

func floorTable(runs int, delay time.Duration) {
	addrs, stop := floorServe(delay)
	defer stop()
	fmt.Printf("### Floor: 1000 bare TCP exchanges of a probe's shape (3 round trips, one delayed %v), client in its own process\n\n", delay)
	fmt.Println("| exchanges | wall s | wall − slowest RTT ms | client CPU s |")
	fmt.Println("|---:|---:|---:|---:|")
	var wall, over, cpu stat
	for r := 0; r < runs; r++ {
		out, err := exec.Command(os.Args[0], "-floor-client", strings.Join(addrs, ",")).Output()
		var w, slow, c float64
		if _, serr := fmt.Sscan(string(out), &w, &slow, &c); err != nil || serr != nil {
			fmt.Fprintln(os.Stderr, "floor client:", err, serr)
			continue
		}
		wall, over, cpu = append(wall, w), append(over, (w-slow)*1000), append(cpu, c)
	}
	fmt.Printf("| 1000 | %s | %s | %s |\n\n", wall, over, cpu)
}
