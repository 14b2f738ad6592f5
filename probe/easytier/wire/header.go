package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Sentinel errors. Callers classify with errors.Is.
var (
	ErrShort         = errors.New("packet too short")
	ErrTooLong       = errors.New("frame too long")
	ErrUDPLength     = errors.New("udp header length does not match datagram")
	ErrUDPType       = errors.New("unexpected udp message type")
	ErrProto         = errors.New("malformed protobuf")
	ErrDigestLength  = errors.New("handshake digest is not 32 bytes")
	ErrDecrypt       = errors.New("cannot decrypt rpc payload")
	ErrPieces        = errors.New("bad rpc piece numbering")
	ErrCompressed    = errors.New("rpc body is zstd-compressed")
	ErrUnsafeMessage = errors.New("message outside the allowed set")
)

// HeaderLen is the size of the PeerManagerHeader.
const HeaderLen = 16

// MaxTCPFrame is the largest length field a node accepts on tcp.
const MaxTCPFrame = 2000

// PacketType is the header's packet_type byte.
type PacketType uint8

// Packet types the prober sends or reads.
const (
	TypeData      PacketType = 1
	TypeHandShake PacketType = 2
	TypePing      PacketType = 4
	TypePong      PacketType = 5
	TypeRPCReq    PacketType = 8
	TypeRPCResp   PacketType = 9
	TypeForeign   PacketType = 10
	TypeNoise1    PacketType = 13
)

// FlagEncrypted marks a payload sealed as ciphertext‖tag(16)‖nonce(12).
const FlagEncrypted = 0x01

// Header is the 16-byte PeerManagerHeader.
type Header struct {
	From, To uint32
	Type     PacketType
	Flags    uint8
	Forward  uint8
	Len      uint32 // informational; the frame length bounds the payload
}

// AppendPacket appends header+payload with forward counter 1, flags 0 and
// len set to the payload length, as EasyTier's own packet builder does.
func AppendPacket(dst []byte, from, to uint32, t PacketType, payload []byte) []byte {
	var h [HeaderLen]byte
	binary.LittleEndian.PutUint32(h[0:], from)
	binary.LittleEndian.PutUint32(h[4:], to)
	h[8] = byte(t)
	h[10] = 1
	binary.LittleEndian.PutUint32(h[12:], uint32(len(payload)))
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// ParsePacket splits a packet into its header and payload.
func ParsePacket(b []byte) (Header, []byte, error) {
	if len(b) < HeaderLen {
		return Header{}, nil, fmt.Errorf("parsing header of %d bytes: %w", len(b), ErrShort)
	}
	h := Header{
		From:    binary.LittleEndian.Uint32(b[0:]),
		To:      binary.LittleEndian.Uint32(b[4:]),
		Type:    PacketType(b[8]),
		Flags:   b[9],
		Forward: b[10],
		Len:     binary.LittleEndian.Uint32(b[12:]),
	}
	return h, b[HeaderLen:], nil
}

// TCPFrameLen validates a tcp length prefix and returns how many bytes follow.
func TCPFrameLen(prefix [4]byte) (int, error) {
	n := binary.LittleEndian.Uint32(prefix[:])
	if n < HeaderLen {
		return 0, fmt.Errorf("tcp frame length %d: %w", n, ErrShort)
	}
	if n > MaxTCPFrame {
		return 0, fmt.Errorf("tcp frame length %d: %w", n, ErrTooLong)
	}
	return int(n), nil
}

// AppendTCPFrame prefixes a packet with its u32 length.
func AppendTCPFrame(dst, packet []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(packet)))
	return append(dst, packet...)
}

// UDP tunnel message types.
const (
	UDPSyn  = 1
	UDPSack = 2
	UDPData = 3
)

// UDPHeaderLen is the size of the UDP tunnel header.
const UDPHeaderLen = 8

// AppendUDP appends a UDP tunnel datagram of the given type around body.
func AppendUDP(dst []byte, connID uint32, msgType uint8, body []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, connID)
	dst = append(dst, msgType, 0)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(body)))
	return append(dst, body...)
}

// AppendUDPSyn builds the 16-byte SYN that opens a UDP tunnel.
func AppendUDPSyn(dst []byte, connID uint32, magic uint64) []byte {
	var m [8]byte
	binary.LittleEndian.PutUint64(m[:], magic)
	return AppendUDP(dst, connID, UDPSyn, m[:])
}

// ParseUDP checks a datagram's tunnel header and returns it with the body.
func ParseUDP(d []byte) (connID uint32, msgType uint8, body []byte, err error) {
	if len(d) < UDPHeaderLen {
		return 0, 0, nil, fmt.Errorf("parsing udp datagram of %d bytes: %w", len(d), ErrShort)
	}
	connID = binary.LittleEndian.Uint32(d)
	msgType = d[4]
	if int(binary.LittleEndian.Uint16(d[6:])) != len(d)-UDPHeaderLen {
		return 0, 0, nil, ErrUDPLength
	}
	return connID, msgType, d[UDPHeaderLen:], nil
}

// IsSack reports whether a datagram is the SACK answering our SYN.
func IsSack(d []byte, connID uint32, magic uint64) bool {
	id, t, body, err := ParseUDP(d)
	return err == nil && id == connID && t == UDPSack && len(body) == 8 &&
		binary.LittleEndian.Uint64(body) == magic
}

// PingPayload is the 4-byte little-endian sequence number of a Ping.
func PingPayload(seq uint32) []byte { return AppendPingPayload(nil, seq) }

// AppendPingPayload is PingPayload appending to dst.
func AppendPingPayload(dst []byte, seq uint32) []byte {
	return binary.LittleEndian.AppendUint32(dst, seq)
}

// PingSeq reads a Ping or Pong sequence number.
func PingSeq(payload []byte) (uint32, error) {
	if len(payload) < 4 {
		return 0, fmt.Errorf("ping payload of %d bytes: %w", len(payload), ErrShort)
	}
	return binary.LittleEndian.Uint32(payload), nil
}

// AppendPongFor appends to dst the Pong EasyTier expects for a received
// Ping packet: the same bytes with only the type changed. A Ping whose
// payload is shorter than 4 bytes is refused, since a short Pong can abort
// a node.
func AppendPongFor(dst, ping []byte) ([]byte, error) {
	if len(ping) < HeaderLen+4 {
		return nil, fmt.Errorf("echoing a %d-byte ping: %w", len(ping), ErrUnsafeMessage)
	}
	if PacketType(ping[8]) != TypePing {
		return nil, fmt.Errorf("echoing packet type %d: %w", ping[8], ErrUnsafeMessage)
	}
	n := len(dst)
	dst = append(dst, ping...)
	dst[n+8] = byte(TypePong)
	return dst, nil
}
