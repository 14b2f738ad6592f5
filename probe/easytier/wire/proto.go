package wire

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// field is one decoded protobuf field. For varints v holds the value, for
// length-delimited fields b holds the bytes (aliasing the input).
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64
	b   []byte
}

// eachField walks a protobuf message and calls fn for every field, skipping
// groups and fixed-width values it does not need.
func eachField(msg []byte, fn func(f field) error) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return fmt.Errorf("reading tag: %w", ErrProto)
		}
		msg = msg[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(msg)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(msg)
		default:
			n = protowire.ConsumeFieldValue(num, typ, msg)
		}
		if n < 0 {
			return fmt.Errorf("reading field %d: %w", num, ErrProto)
		}
		msg = msg[n:]
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b // proto3 default, omitted as prost does
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// Handshake is EasyTier's HandshakeRequest, sent by both sides.
type Handshake struct {
	Magic       uint32
	PeerID      uint32
	Version     uint32
	NetworkName string
	Digest      []byte
}

// HandshakeMagic and HandshakeVersion are the constants every 2.x node sends.
const (
	HandshakeMagic   = 0xd1e1a5e1
	HandshakeVersion = 1
)

// AppendHandshake encodes a HandshakeRequest for our own identity.
func AppendHandshake(b []byte, peerID uint32, networkName string, digest [32]byte) []byte {
	b = appendVarintField(b, 1, HandshakeMagic)
	b = appendVarintField(b, 2, uint64(peerID))
	b = appendVarintField(b, 3, HandshakeVersion)
	b = appendBytesField(b, 5, []byte(networkName))
	b = protowire.AppendTag(b, 6, protowire.BytesType)
	return protowire.AppendBytes(b, digest[:])
}

// ParseHandshake decodes a node's HandshakeRequest. Like EasyTier it only
// insists on a 32-byte digest; magic and version are reported, not checked.
func ParseHandshake(b []byte) (Handshake, error) {
	var h Handshake
	err := eachField(b, func(f field) error {
		switch f.num {
		case 1:
			h.Magic = uint32(f.v)
		case 2:
			h.PeerID = uint32(f.v)
		case 3:
			h.Version = uint32(f.v)
		case 5:
			h.NetworkName = string(f.b)
		case 6:
			h.Digest = f.b
		}
		return nil
	})
	if err != nil {
		return Handshake{}, fmt.Errorf("decoding handshake: %w", err)
	}
	if len(h.Digest) != 32 {
		return Handshake{}, fmt.Errorf("decoding handshake: %w (got %d)", ErrDigestLength, len(h.Digest))
	}
	return h, nil
}
