package rxstamp

import (
	"syscall"
	"time"
	"unsafe"
)

// Enable asks the kernel to stamp the data c receives (SO_TIMESTAMPNS).
// It fails only on sockets that cannot do it; their reads then have no
// stamps.
func Enable(c syscall.Conn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return false
	}
	return serr == nil
}

// Parse finds SCM_TIMESTAMPNS among the control messages of a recvmsg,
// without allocating; zero if it is absent or the messages are malformed.
func Parse(oob []byte) time.Time {
	const hdr = int(unsafe.Sizeof(syscall.Cmsghdr{}))
	for len(oob) >= hdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return time.Time{}
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SO_TIMESTAMPNS && l-hdr >= int(unsafe.Sizeof(syscall.Timespec{})) {
			ts := (*syscall.Timespec)(unsafe.Pointer(&oob[hdr]))
			return time.Unix(int64(ts.Sec), int64(ts.Nsec))
		}
		const align = int(unsafe.Sizeof(uintptr(0))) // CMSG_ALIGN: sizeof(long)
		next := (l + align - 1) &^ (align - 1)
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return time.Time{}
}
