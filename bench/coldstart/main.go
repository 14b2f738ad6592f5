// Command coldstart measures how fast neo-uptime-node gets to work: from
// process start to its first dial of a node (backend fetch and state file
// included), and the bootstrap's first (cold) and second (warm) invocation
// under the Lambda Runtime Interface Emulator. It prints Markdown tables.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/neouptime/neo-uptime-node/bench/internal/stats"
)

// stat is a series of runs, printed as its median with the spread.
type stat []float64

func (s stat) String() string { return stats.Spread(s) }

func main() {
	bin := flag.String("bin", "bin/neo-uptime-node", "binary")
	bootstrap := flag.String("bootstrap", "", "host-arch bootstrap built with -tags lambda.norpc")
	rie := flag.String("rie", ".cache/bin/aws-lambda-rie", "Lambda Runtime Interface Emulator")
	runs := flag.Int("runs", 5, "runs")
	flag.Parse()

	// A listener that notes when the first connection arrives.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	accepted := make(chan time.Time, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- time.Now()
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			fmt.Fprintf(w, `{"code":200,"data":{"peers":[{"id":1,"host":"127.0.0.1","port":%d,"protocol":"tcp"}]}}`, port)
			return
		}
		fmt.Fprint(w, `{"code":200}`)
	}))
	defer backend.Close()

	var firstDial stat
	for i := 0; i < *runs; i++ {
		dir, _ := os.MkdirTemp("", "neo-cold-")
		cmd := exec.Command(*bin, "-deadline", "3s", "-report-reserve", "1s", "-log-level", "error")
		cmd.Env = []string{"BACKEND_BASE_URL=" + backend.URL, "API_KEY=k", "DATABASE_PATH=" + filepath.Join(dir, "s.db")}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			panic(err)
		}
		t := <-accepted
		firstDial = append(firstDial, float64(t.Sub(start).Microseconds())/1000)
		cmd.Wait()
		os.RemoveAll(dir)
	}
	fmt.Println("### Cold start")
	fmt.Println()
	fmt.Println("| measure | ms |")
	fmt.Println("|---|---:|")
	fmt.Printf("| process start → first dial of a node (fetch + state included) | %s |\n", firstDial)

	if *bootstrap != "" {
		var cold, warm stat
		for i := 0; i < *runs; i++ {
			c, w := lambdaInvokes(*rie, *bootstrap, backend.URL)
			cold, warm = append(cold, c), append(warm, w)
		}
		fmt.Printf("| bootstrap under the Lambda emulator: first invocation (init + run) | %s |\n", cold)
		fmt.Printf("| bootstrap under the Lambda emulator: second, warm invocation | %s |\n", warm)
		fmt.Printf("| → init cost (first − warm, median) | %.1f |\n", stats.Median(cold)-stats.Median(warm))
	}
	fmt.Println()
}

func freeAddr() string {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	return l.Addr().String()
}

// lambdaInvokes times two invocations of a fresh emulator.
func lambdaInvokes(rie, bootstrap, backend string) (cold, warm float64) {
	dir, _ := os.MkdirTemp("", "neo-rie-")
	defer os.RemoveAll(dir)
	addr := freeAddr()
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", addr, "--runtime-api-address", freeAddr(), bootstrap)
	cmd.Env = []string{"AWS_LAMBDA_FUNCTION_TIMEOUT=10", "BACKEND_BASE_URL=" + backend, "API_KEY=k",
		"DATABASE_PATH=" + filepath.Join(dir, "s.db"), "NEO_DEADLINE=3s", "NEO_REPORT_RESERVE=1s", "LOG_LEVEL=error"}
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	url := "http://" + addr + "/2015-03-31/functions/function/invocations"
	for { // wait for the emulator's port, not for the function
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	invoke := func() float64 {
		start := time.Now()
		resp, err := http.Post(url, "application/json", strings.NewReader(`{"source":"neo-uptime-node.schedule"}`))
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		return float64(time.Since(start).Microseconds()) / 1000
	}
	return invoke(), invoke()
}
