//go:build !unix

package easytier_test

import "time"

// cpuTime is unknown here: BenchmarkProbe reports no cpu-us/op.
func cpuTime() time.Duration { return 0 }
