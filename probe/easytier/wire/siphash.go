package wire

import (
	"encoding/binary"
	"math/bits"
)

// sipHash13 is SipHash-1-3 with the key (0, 0), which is what Rust's
// std DefaultHasher computes and what EasyTier uses for the network digest
// and the legacy RPC keys.
func sipHash13(b []byte) uint64 {
	const (
		c0 = 0x736f6d6570736575
		c1 = 0x646f72616e646f6d
		c2 = 0x6c7967656e657261
		c3 = 0x7465646279746573
	)
	v0, v1, v2, v3 := uint64(c0), uint64(c1), uint64(c2), uint64(c3)
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	n := len(b)
	for len(b) >= 8 {
		m := binary.LittleEndian.Uint64(b)
		v3 ^= m
		round()
		v0 ^= m
		b = b[8:]
	}
	var last [8]byte
	copy(last[:], b)
	m := binary.LittleEndian.Uint64(last[:]) | uint64(n&0xff)<<56
	v3 ^= m
	round()
	v0 ^= m
	v2 ^= 0xff
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}

// Digest returns the 32-byte network secret digest EasyTier sends in its
// handshake: a SipHash chain over name‖secret where each round appends the
// whole digest prefix computed so far.
func Digest(networkName, networkSecret string) [32]byte {
	var d [32]byte
	s := make([]byte, 0, len(networkName)+len(networkSecret)+80)
	s = append(s, networkName...)
	s = append(s, networkSecret...)
	for i := 0; i < 4; i++ {
		binary.BigEndian.PutUint64(d[8*i:], sipHash13(s))
		s = append(s, d[:8*(i+1)]...)
	}
	return d
}

// Key128 derives the AES-128-GCM (and XOR) key from the network secret.
func Key128(secret string) [16]byte {
	var k [16]byte
	s := []byte(secret)
	binary.BigEndian.PutUint64(k[0:], sipHash13(s))
	s = append(s, k[:8]...)
	binary.BigEndian.PutUint64(k[8:], sipHash13(s))
	return k
}

// Key256 derives the AES-256-GCM and ChaCha20-Poly1305 key from the secret.
func Key256(secret string) [32]byte {
	var k [32]byte
	s := append([]byte(secret), "easytier-256bit-key"...)
	for i := 0; i < 4; i++ {
		s = append(s, k[:8*i]...)
		s = append(s, byte(i))
		binary.BigEndian.PutUint64(k[8*i:], sipHash13(s))
	}
	return k
}
