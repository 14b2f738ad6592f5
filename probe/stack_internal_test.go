package probe

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// presizeChildEnv makes the test binary run TestPresizeStack's count.
const presizeChildEnv = "NEO_TEST_PRESIZE_CHILD"

// presizeStack leaves its goroutine with an 8 KiB stack: not the 2 KiB a
// goroutine starts with (the compiler kept the frame), and not 16 KiB
// (the frame still fits in 8).
func TestPresizeStack(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's runtime sizes stacks its own way")
	}
	if os.Getenv(presizeChildEnv) != "1" {
		// In a process of its own: stacks that other tests' goroutines
		// (or this test's, under -count) left in the runtime's pools
		// skew the count.
		cmd := exec.Command(os.Args[0], "-test.run=^TestPresizeStack$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), presizeChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "stack per goroutine") {
				t.Log(strings.TrimSpace(line))
			}
		}
		return
	}
	perGoroutine := func(presize bool) float64 {
		const n = 500
		var ready, release sync.WaitGroup
		ready.Add(n)
		release.Add(1)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range n {
			go func() {
				if presize {
					presizeStack()
				}
				ready.Done()
				release.Wait()
			}()
		}
		ready.Wait()
		runtime.ReadMemStats(&after)
		release.Done()
		return float64(after.StackInuse-before.StackInuse) / n
	}
	plain, presized := perGoroutine(false), perGoroutine(true)
	t.Logf("stack per goroutine: %.0f bytes plain, %.0f presized", plain, presized)
	if presized < 7<<10 || presized > 9<<10 {
		t.Fatalf("presized goroutine stack %.0f bytes, want ~8 KiB (plain: %.0f)", presized, plain)
	}
}
