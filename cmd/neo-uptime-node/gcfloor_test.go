package main

import (
	"errors"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
)

func TestNewGCFloor(t *testing.T) {
	const mib = 1 << 20
	const none = math.MaxInt64
	noFile := func(string) ([]byte, error) { return nil, os.ErrNotExist }
	cgroup := func(path, body string) func(string) ([]byte, error) {
		return func(p string) ([]byte, error) {
			if p == path {
				return []byte(body), nil
			}
			return nil, os.ErrNotExist
		}
	}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		read  func(string) ([]byte, error)
		limit int64 // the runtime's memory limit (GOMEMLIMIT)
		want  int64 // 0: no floor
	}{
		{"no limit known", nil, noFile, none, 64 * mib},
		{"GOGC chosen", map[string]string{"GOGC": "200"}, noFile, none, 0},
		{"GOMEMLIMIT 230 MiB", map[string]string{"GOMEMLIMIT": "230MiB"}, noFile, 230 * mib, 230 * mib / 4},
		{"GOMEMLIMIT 1 GiB", map[string]string{"GOMEMLIMIT": "1GiB"}, noFile, 1024 * mib, 64 * mib},
		{"GOMEMLIMIT 16 MiB", map[string]string{"GOMEMLIMIT": "16MiB"}, noFile, 16 * mib, 0},
		{"GOMEMLIMIT under the cgroup's", map[string]string{"GOMEMLIMIT": "100MiB"},
			cgroup("/sys/fs/cgroup/memory.max", "268435456\n"), 100 * mib, 25 * mib},
		{"Lambda 128 MB", map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128"}, noFile, none, 32 * mib},
		{"Lambda 1769 MB", map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769"}, noFile, none, 64 * mib},
		{"Lambda too small", map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "16"}, noFile, none, 0},
		{"Lambda size garbled", map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "lots"}, noFile, none, 64 * mib},
		{"cgroup v2 100 MB", nil, cgroup("/sys/fs/cgroup/memory.max", "100000000\n"), none, 25000000},
		{"cgroup v2 no limit", nil, cgroup("/sys/fs/cgroup/memory.max", "max\n"), none, 64 * mib},
		{"cgroup v1 no limit", nil, cgroup("/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n"), none, 64 * mib},
		{"cgroup v1 128 MiB", nil, cgroup("/sys/fs/cgroup/memory/memory.limit_in_bytes", "134217728"), none, 32 * mib},
		{"unreadable cgroup", nil, func(string) ([]byte, error) { return nil, errors.New("EACCES") }, none, 64 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newGCFloor(func(k string) string { return tc.env[k] }, tc.read, tc.limit)
			var got int64
			if f != nil {
				got = f.bytes
				if f.limit != tc.limit {
					t.Errorf("limit given back %d, want %d", f.limit, tc.limit)
				}
			}
			if got != tc.want {
				t.Errorf("floor = %d bytes, want %d", got, tc.want)
			}
		})
	}
}

// readGC reads the collector's settings and its cycle count.
func readGC() (gogc, limit, cycles, inUse int64) {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64()), int64(s[1].Value.Uint64()), int64(s[2].Value.Uint64()),
		int64(s[3].Value.Uint64() - s[4].Value.Uint64())
}

var gcFloorSink [][]byte

// TestGCFloor_NoCollectionBelowTheFloorThenAsUsual: once armed, a run's
// garbage below the floor is never collected; the first collection gives
// GOGC=100 and the limit there was (none, or GOMEMLIMIT's) back.
func TestGCFloor_NoCollectionBelowTheFloorThenAsUsual(t *testing.T) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOGC or GOMEMLIMIT set for the test process")
	}
	defer func() {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
	}()
	for _, limit := range []int64{math.MaxInt64, 3 << 30} {
		debug.SetMemoryLimit(limit)
		runtime.GC()
		_, _, _, inUse := readGC()
		f := &gcFloor{bytes: inUse + 64<<20, limit: limit} // above what earlier tests left mapped
		f.arm()
		gogc, got, before, _ := readGC()
		if gogc != -1 || got != f.bytes {
			t.Fatalf("armed: GOGC %d, limit %d; want off, %d", gogc, got, f.bytes)
		}
		for range 4096 { // 16 MiB of garbage, in a run's small pieces
			gcFloorSink = append(gcFloorSink[:0], make([]byte, 4<<10))
		}
		if _, _, after, _ := readGC(); after != before {
			t.Errorf("%d collections below the floor, want none", after-before)
		}
		runtime.GC()
		deadline := time.Now().Add(5 * time.Second)
		for {
			gogc, got, _, _ = readGC()
			if gogc == 100 && got == limit {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after a collection: GOGC %d, limit %d; want 100 and %d", gogc, got, limit)
			}
			time.Sleep(time.Millisecond)
		}
	}
	var nilFloor *gcFloor
	nilFloor.arm() // no floor: nothing changes
	if gogc, limit, _, _ := readGC(); gogc != 100 || limit != 3<<30 {
		t.Errorf("a nil floor changed GOGC to %d, the limit to %d", gogc, limit)
	}
}

// TestRun_NoCollectionInARunBelowTheFloor: the binary arms the floor, so
// a run of 1,000 peers collects nothing after main (gctrace), but for one
// collection that may have started before the floor was armed; with GOGC
// set, which leaves the collector alone, the same run collects several
// times.
func TestRun_NoCollectionInARunBelowTheFloor(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary against 1,000 probes")
	}
	node := startFake(t, &easytiertest.Fake{NetworkName: "gc-net", NetworkSecret: "s"})
	be := &testBackend{}
	for id := 1; id <= 1000; id++ {
		be.peers = append(be.peers, peer(id, node.TCPURL(), "gc-net", "s"))
	}
	srv := httptest.NewServer(be)
	defer srv.Close()
	collections := func(env map[string]string) int {
		env["BACKEND_BASE_URL"], env["API_KEY"] = srv.URL+"/api/", "test-key-9b1"
		env["DATABASE_PATH"] = filepath.Join(t.TempDir(), "state.db")
		env["GODEBUG"] = "gctrace=1,inittrace=1"
		res := runBinary(t, env, "-samples", "1", "-route-wait", "0", "-log-level", "warn")
		if res.code != exitOK {
			t.Fatalf("exit code %d\n%s", res.code, res.stderr)
		}
		// Count the collections that started after main's init (a trace
		// line comes at a collection's end and gives its start).
		var mainAt float64 = -1
		n := 0
		for _, l := range strings.Split(res.stderr, "\n") {
			var at float64
			if _, err := fmt.Sscanf(l, "init main @%f ms", &at); err == nil {
				mainAt = at / 1000
			}
			var num int
			if _, err := fmt.Sscanf(l, "gc %d @%fs", &num, &at); err == nil && mainAt >= 0 && at >= mainAt {
				n++
			}
		}
		if mainAt < 0 {
			t.Fatalf("no inittrace line for main in:\n%s", res.stderr)
		}
		t.Logf("GOGC=%q: %d collections after main", env["GOGC"], n)
		return n
	}
	if n := collections(map[string]string{}); n > 1 {
		t.Errorf("%d collections after main in a 1,000-peer run, want none (or one begun before the floor)", n)
	}
	if n := collections(map[string]string{"GOGC": "100"}); n < 2 {
		t.Errorf("%d collections with GOGC=100: this run is too small to show the floor", n)
	}
}
