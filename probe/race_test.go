//go:build race

package probe

// raceEnabled: the race detector instruments every function, so frames,
// and the stacks that hold them, are larger than in a normal build.
const raceEnabled = true
