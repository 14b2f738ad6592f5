package probe

// A goroutine starts with a 2 KiB stack, and the runtime doubles it each
// time a call runs out of room: it allocates one twice the size, copies
// the stack into it and adjusts every frame on it. Each probe's
// goroutine went 2 → 4 → 8 KiB, copying twice while a dozen frames deep
// (the deepest point was the net package's dial; a tcp probe, whose
// dial no longer goes through it, dial_linux.go, still reaches 8 KiB):
// at 1,000 peers ~7 % of the job's CPU (perf), the frame walks more than
// the copies.
// presizeStack, called first thing on a probe's goroutine, asks for a
// frame that only an 8 KiB stack holds, so the runtime sizes the stack
// once, while it holds a single frame, to the 8 KiB that every transport
// reaches anyway (TestRunner_ProbeStackStaysSmall).
//
// The runtime's rule (runtime.newstack): double the stack, and keep
// doubling while the new size less what is in use is short of the frame
// asked for plus the guard it keeps below every frame (928 bytes on
// Linux). A 5 KiB frame does not fit in 4 KiB and fits in 8 KiB with
// ~2 KiB to spare, whatever the few hundred bytes of the goroutine's own
// first frame.
//
//go:noinline
func presizeStack() byte {
	var frame [presizeFrame]byte
	// Written and read at indexes the compiler cannot see, so that it can
	// neither drop the array nor shrink the frame (TestPresizeStack).
	frame[presizeWrite] = 1
	return frame[presizeRead]
}

const presizeFrame = 5 << 10

// Never changed; variables only so that the compiler does not know them.
var presizeWrite, presizeRead = 0, presizeFrame - 1
