package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
)

// gcFloor lets a run's memory grow to a floor before its first garbage
// collection, then collects as usual (GOGC=100).
//
// A run is short and what it allocates is mostly dead by its end (1,000
// peers: ~21 MB in all, of which a few MB live at any time). From Go's
// 4 MB minimum heap, the collector ran five times in such a run, each
// time scanning a thousand probe goroutines' stacks with write barriers
// on: ~10 % of the binary's CPU, on the two cores the probes need.
// Below the floor no collection runs; past it, the first collection
// gives the usual pacing back, so a run of 10,000 peers is collected
// as before, from a higher start.
//
// The floor is 64 MiB, and at most a quarter of the memory the process
// is given (Lambda's memory size, a container's cgroup limit, or
// GOMEMLIMIT), so a small sandbox keeps its headroom. A GOMEMLIMIT is
// the limit again after the first collection. GOGC in the environment
// means the user has chosen the pacing: then nothing is changed.
type gcFloor struct {
	bytes int64
	limit int64 // the memory limit to give back (GOMEMLIMIT, or none)
	gen   atomic.Int64
}

const (
	gcFloorMax = 64 << 20
	gcFloorMin = 8 << 20 // below this the floor is not worth having
)

// newGCFloor returns the floor for this process, or nil when there is to
// be none. readFile reads the cgroup's limit (os.ReadFile); limit is the
// runtime's memory limit as it stands (debug.SetMemoryLimit(-1):
// GOMEMLIMIT, or math.MaxInt64 for none).
func newGCFloor(getenv func(string) string, readFile func(string) ([]byte, error), limit int64) *gcFloor {
	if getenv("GOGC") != "" {
		return nil
	}
	floor := int64(gcFloorMax)
	if budget := memoryBudget(getenv, readFile); budget > 0 {
		floor = min(floor, budget/4)
	}
	if limit < math.MaxInt64 {
		floor = min(floor, limit/4)
	}
	if floor < gcFloorMin {
		return nil
	}
	return &gcFloor{bytes: floor, limit: limit}
}

// memoryBudget is the memory this process is given, in bytes, or 0 if
// unknown: Lambda's memory size, else the cgroup's limit (v2, then v1).
func memoryBudget(getenv func(string) string, readFile func(string) ([]byte, error)) int64 {
	if mb, err := strconv.ParseInt(getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), 10, 64); err == nil && mb > 0 {
		return mb << 20
	}
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := readFile(path)
		if err != nil {
			continue
		}
		// "max" (v2) or a huge number (v1) mean no limit.
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err == nil && n > 0 && n < 1<<50 {
			return n
		}
		return 0
	}
	return 0
}

// arm turns collection off up to the floor until the next collection
// (Job.Run calls it as each run starts: once, in loop mode, or in each
// Lambda invocation). A cleanup on an object dropped at once runs after
// that collection and restores GOGC=100 and the limit there was, unless
// a later arm has superseded it. A nil floor does nothing.
func (f *gcFloor) arm() {
	if f == nil {
		return
	}
	gen := f.gen.Add(1)
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(f.bytes)
	sentinel := new([64]byte) // not a tiny allocation, whose cleanup could wait on its neighbours
	runtime.AddCleanup(sentinel, func(gen int64) {
		if f.gen.Load() == gen {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(f.limit)
		}
	}, gen)
}
