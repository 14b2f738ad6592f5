package fdtable

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"syscall"
)

func size() (int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("FDSize:")); ok {
			return strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	return 0, errors.New("no FDSize in /proc/self/status")
}

func reserve(n int) (int, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, os.NewSyscallError("getrlimit", err)
	}
	return reserveUnder(n, lim.Cur)
}

// reserveUnder is Reserve with the soft limit given.
func reserveUnder(n int, limit uint64) (int, error) {
	if n <= 0 {
		return 0, nil
	}
	// A descriptor of our own to copy (stdin may be closed); as the
	// lowest free number it also says where the new ones will start.
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, os.NewSyscallError("socket", err)
	}
	defer syscall.Close(fd)
	top := fd + n - 1
	if limit > 0 && uint64(top) >= limit {
		top = int(limit - 1)
	}
	if top < initialSlots {
		return 0, nil
	}
	// F_DUPFD takes the lowest free number at or above top, growing the
	// table to hold it; unlike dup2 it never closes one in use.
	hi, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, uintptr(top))
	if errno != 0 {
		return 0, os.NewSyscallError("fcntl", errno)
	}
	syscall.Close(int(hi))
	return int(hi), nil
}
