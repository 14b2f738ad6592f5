package rxstamp

import (
	"net"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// cmsg appends one control message of the given level and type carrying
// data, padded as the kernel pads it.
func cmsg(b []byte, level, typ int32, data []byte) []byte {
	m := make([]byte, syscall.CmsgSpace(len(data)))
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&m[0]))
	h.Level, h.Type = level, typ
	h.SetLen(syscall.CmsgLen(len(data)))
	copy(m[syscall.CmsgLen(0):], data)
	return append(b, m...)
}

func timespec(t time.Time) []byte {
	ts := syscall.NsecToTimespec(t.UnixNano())
	return unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts))
}

func TestParse(t *testing.T) {
	at := time.Unix(1_800_000_000, 123_456_789)
	stamp := cmsg(nil, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, timespec(at))
	other := cmsg(nil, syscall.SOL_IP, syscall.IP_TTL, []byte{64, 0, 0, 0})
	truncated := stamp[:len(stamp)-4]
	lying := append([]byte(nil), stamp...)
	(*syscall.Cmsghdr)(unsafe.Pointer(&lying[0])).SetLen(len(stamp) + 8)
	short := append([]byte(nil), stamp...)
	(*syscall.Cmsghdr)(unsafe.Pointer(&short[0])).SetLen(4)
	for _, tc := range []struct {
		name string
		oob  []byte
		want time.Time
	}{
		{"stamp alone", stamp, at},
		{"after another message", append(append([]byte(nil), other...), stamp...), at},
		{"before another message", append(append([]byte(nil), stamp...), other...), at},
		{"none", nil, time.Time{}},
		{"other message only", other, time.Time{}},
		{"stamp cut short", truncated, time.Time{}},
		{"length past the buffer", lying, time.Time{}},
		{"length under a header", append(short, stamp...), time.Time{}},
		{"wrong level", cmsg(nil, syscall.SOL_IP, syscall.SO_TIMESTAMPNS, timespec(at)), time.Time{}},
	} {
		if got := Parse(tc.oob); !got.Equal(tc.want) {
			t.Errorf("%s: Parse = %v, want %v", tc.name, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { Parse(stamp) }); n != 0 {
		t.Errorf("Parse allocates %v times", n)
	}
}

// A datagram read with its control messages carries the kernel's stamp,
// which lies between the send and the read.
func TestEnable_UDPDatagramIsStamped(t *testing.T) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if !Enable(srv) {
		t.Fatal("SO_TIMESTAMPNS refused on a UDP socket")
	}
	cl, err := net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	buf, oob := make([]byte, 16), make([]byte, OOBSize)
	before := time.Now().Round(0)
	if _, err := cl.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_, oobn, _, _, err := srv.ReadMsgUDP(buf, oob)
	after := time.Now().Round(0)
	if err != nil {
		t.Fatal(err)
	}
	got := Parse(oob[:oobn])
	if got.IsZero() || got.Before(before) || got.After(after) {
		t.Fatalf("stamp %v, want one in [%v, %v]", got, before, after)
	}
}
