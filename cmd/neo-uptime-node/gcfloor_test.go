package main

import (
	"errors"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestNewGCFloor(t *testing.T) {
	const mib = 1 << 20
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
		name string
		env  map[string]string
		read func(string) ([]byte, error)
		want int64 // 0: no floor
	}{
		{"no limit known", nil, noFile, 64 * mib},
		{"GOGC chosen", map[string]string{"GOGC": "200"}, noFile, 0},
		{"GOMEMLIMIT chosen", map[string]string{"GOMEMLIMIT": "1GiB"}, noFile, 0},
		{"Lambda 128 MB", map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128"}, noFile, 32 * mib},
		{"Lambda 1769 MB", map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769"}, noFile, 64 * mib},
		{"Lambda too small", map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "16"}, noFile, 0},
		{"Lambda size garbled", map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "lots"}, noFile, 64 * mib},
		{"cgroup v2 100 MB", nil, cgroup("/sys/fs/cgroup/memory.max", "100000000\n"), 25000000},
		{"cgroup v2 no limit", nil, cgroup("/sys/fs/cgroup/memory.max", "max\n"), 64 * mib},
		{"cgroup v1 no limit", nil, cgroup("/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n"), 64 * mib},
		{"cgroup v1 128 MiB", nil, cgroup("/sys/fs/cgroup/memory/memory.limit_in_bytes", "134217728"), 32 * mib},
		{"unreadable cgroup", nil, func(string) ([]byte, error) { return nil, errors.New("EACCES") }, 64 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newGCFloor(func(k string) string { return tc.env[k] }, tc.read)
			var got int64
			if f != nil {
				got = f.bytes
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
// GOGC=100 and no limit back.
func TestGCFloor_NoCollectionBelowTheFloorThenAsUsual(t *testing.T) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOGC or GOMEMLIMIT set for the test process")
	}
	defer func() {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
	}()
	runtime.GC()
	_, _, _, inUse := readGC()
	f := &gcFloor{bytes: inUse + 64<<20} // above what earlier tests left mapped
	f.arm()
	gogc, limit, before, _ := readGC()
	if gogc != -1 || limit != f.bytes {
		t.Fatalf("armed: GOGC %d, limit %d; want off, %d", gogc, limit, f.bytes)
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
		gogc, limit, _, _ = readGC()
		if gogc == 100 && limit == math.MaxInt64 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a collection: GOGC %d, limit %d; want 100 and none", gogc, limit)
		}
		time.Sleep(time.Millisecond)
	}
	var nilFloor *gcFloor
	nilFloor.arm() // no floor: nothing changes
	if gogc, limit, _, _ = readGC(); gogc != 100 || limit != math.MaxInt64 {
		t.Errorf("a nil floor changed GOGC to %d, the limit to %d", gogc, limit)
	}
}
