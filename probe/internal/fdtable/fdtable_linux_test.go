package fdtable

import (
	"os"
	"syscall"
	"testing"
)

func tableSize(t *testing.T) int {
	t.Helper()
	n, err := Size()
	if err != nil || n == 0 {
		t.Fatalf("table size: %d, %v", n, err)
	}
	return n
}

func openCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// belowLimit skips the test if descriptor fd is past the soft limit
// (-count runs it again on a table it grew).
func belowLimit(t *testing.T, fd int) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if uint64(fd) >= lim.Cur {
		t.Skipf("descriptor %d is past the limit of %d", fd, lim.Cur)
	}
}

// lowestFree is the number the next descriptor opened gets.
func lowestFree(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	return fd
}

func TestReserve_GrowsTheTableAndLeavesNothingOpen(t *testing.T) {
	n := tableSize(t) + 1 // past anything the table holds now
	open := openCount(t)
	want := lowestFree(t) + n - 1
	belowLimit(t, want)
	hi, err := Reserve(n)
	if err != nil {
		t.Fatal(err)
	}
	if hi != want {
		t.Errorf("Reserve(%d) made room up to %d, want %d", n, hi, want)
	}
	if got := tableSize(t); got <= want {
		t.Errorf("table holds %d descriptors after Reserve(%d), want more than %d", got, n, want)
	}
	if got := openCount(t); got != open {
		t.Errorf("%d descriptors open after Reserve, %d before", got, open)
	}
}

func TestReserve_NeverTouchesADescriptorInUse(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "held")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := tableSize(t) + 1
	belowLimit(t, n+1)
	if err := syscall.Dup3(int(f.Fd()), n, syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(n)
	count := n - lowestFree(t) + 1 // so that the top Reserve aims at is n
	hi, err := Reserve(count)
	if err != nil {
		t.Fatal(err)
	}
	if hi <= n {
		t.Errorf("Reserve(%d) aimed at %d, in use, and returned %d", count, n, hi)
	}
	var held, ours syscall.Stat_t
	if err := syscall.Fstat(n, &held); err != nil {
		t.Fatalf("descriptor %d after Reserve: %v", n, err)
	}
	if err := syscall.Fstat(int(f.Fd()), &ours); err != nil {
		t.Fatal(err)
	}
	if held.Ino != ours.Ino || held.Dev != ours.Dev {
		t.Errorf("descriptor %d no longer the file it was", n)
	}
}

func TestReserve_StaysUnderTheLimit(t *testing.T) {
	const limit = 200
	hi, err := reserveUnder(100000, limit)
	if err != nil {
		t.Fatal(err)
	}
	if hi != limit-1 {
		t.Errorf("made room up to %d under a limit of %d", hi, limit)
	}
}

// A few more descriptors fit in the table every process starts with.
func TestReserve_SmallNeedDoesNothing(t *testing.T) {
	for _, n := range []int{initialSlots - lowestFree(t), 0, -1 << 20} {
		if hi, err := Reserve(n); hi != 0 || err != nil {
			t.Errorf("Reserve(%d) = %d, %v; want 0, nil", n, hi, err)
		}
	}
}
