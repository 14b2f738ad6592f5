//go:build !linux

package main

// The peaks sampler (NEO_DEBUG_PEAKS, for bench/scale) reads /proc, which
// only Linux has; elsewhere it reports descriptors and RSS as 0.

func vmHWM() int { return 0 }

func countFDs([]byte) int { return 0 }
