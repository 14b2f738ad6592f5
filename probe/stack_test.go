package probe

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
)

// fakeNodeEnv makes the test binary a fake node (TestHelperFakeNode),
// so that the fake's goroutines are not counted in the prober's stacks.
const fakeNodeEnv = "NEO_TEST_FAKE_NODE"

func TestHelperFakeNode(t *testing.T) {
	if os.Getenv(fakeNodeEnv) != "1" {
		t.Skip("helper process for TestRunner_ProbeStackStaysSmall")
	}
	f, err := easytiertest.StartFake(&easytiertest.Fake{NetworkName: "n", NetworkSecret: "s",
		Delay: 500 * time.Millisecond, ListenIP: "127.0.0.1", Encrypt: "aes-gcm", Foreign: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	os.Stdout.WriteString(f.TCPURL() + "\n")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent is done
}

// A probe's goroutine stack stays within 8 KiB. The runtime grows a
// stack by copying it whole into one twice the size, and a probe's
// deepest point (the dial, inside the net package) is deep: with an
// Observation and Options copied through its frames, each probe's stack
// went 2 → 4 → 8 → 16 KiB, 16 MB and a third copy per 1,000 probes.
func TestRunner_ProbeStackStaysSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a helper process")
	}
	if raceEnabled {
		t.Skip("the race detector's instrumentation makes every frame larger")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFakeNode$")
	cmd.Env = append(os.Environ(), fakeNodeEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	url, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("fake node: %v", err)
	}
	url = strings.TrimSpace(url)

	const n = 300
	targets := make([]Target, n)
	for i := range targets {
		targets[i] = Target{ID: int64(i), URL: url, NetworkName: "n", NetworkSecret: "s"}
	}
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	// The fake answers pongs after 500 ms: sample while all n wait.
	peak := make(chan uint64)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		var top uint64
		for ctx.Err() == nil {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			top = max(top, ms.StackInuse)
			time.Sleep(20 * time.Millisecond)
		}
		peak <- top
	}()
	r := &Runner{}
	r.Options.Samples = 1 // and the route sync, whose encrypted push is the deepest the session goes
	results := r.Run(t.Context(), targets)
	cancel()
	top := <-peak
	for _, res := range results {
		if !res.Online() || res.Obs.Node == nil {
			t.Fatalf("probe %d: %s %v, node info %v", res.Target.ID, res.Class, res.Err, res.Obs.Node)
		}
	}
	perProbe := float64(top-base.StackInuse) / n
	t.Logf("peak stack in use %d KiB, %.1f KiB per probe", top>>10, perProbe/1024)
	if perProbe > 12<<10 {
		t.Errorf("%.1f KiB of stack per probe in flight, want at most 8 KiB each (and a little room)", perProbe/1024)
	}
}
