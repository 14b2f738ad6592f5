package wire

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// aeadTailLen is tag(16) ‖ nonce(12), appended to every sealed payload.
const aeadTailLen = 28

// Cipher names as EasyTier's encryption_algorithm setting spells them.
const (
	CipherAES128GCM = "aes-gcm"
	CipherAES256GCM = "aes-256-gcm"
	CipherChaCha20  = "chacha20"
	CipherXOR       = "xor"
)

// Keys holds the AEADs derived from one network secret. Build it once per
// probe with NewKeys; Open tries each cipher EasyTier ships.
type Keys struct {
	aeads  []namedAEAD
	xorKey [16]byte
}

type namedAEAD struct {
	name string
	aead cipher.AEAD
}

// NewKeys derives every legacy RPC key from secret.
func NewKeys(secret string) *Keys {
	k128, k256 := Key128(secret), Key256(secret)
	k := &Keys{xorKey: k128}
	if b, err := aes.NewCipher(k128[:]); err == nil {
		if g, err := cipher.NewGCM(b); err == nil {
			k.aeads = append(k.aeads, namedAEAD{CipherAES128GCM, g})
		}
	}
	if b, err := aes.NewCipher(k256[:]); err == nil {
		if g, err := cipher.NewGCM(b); err == nil {
			k.aeads = append(k.aeads, namedAEAD{CipherAES256GCM, g})
		}
	}
	if c, err := chacha20poly1305.New(k256[:]); err == nil {
		k.aeads = append(k.aeads, namedAEAD{CipherChaCha20, c})
	}
	return k
}

// Open decrypts a payload sealed as ciphertext‖tag‖nonce and names the
// cipher whose tag verified. XOR has no tag, so it is tried last and only
// accepted when valid(plaintext) says the result makes sense.
func (k *Keys) Open(payload []byte, valid func([]byte) bool) ([]byte, string, error) {
	if n := len(payload); n >= aeadTailLen {
		nonce := payload[n-12:]
		sealed := make([]byte, 0, n-12)
		sealed = append(sealed, payload[:n-aeadTailLen]...)
		sealed = append(sealed, payload[n-aeadTailLen:n-12]...)
		for _, a := range k.aeads {
			if pt, err := a.aead.Open(nil, nonce, sealed, nil); err == nil {
				return pt, a.name, nil
			}
		}
	}
	pt := make([]byte, len(payload))
	for i := range payload {
		pt[i] = payload[i] ^ k.xorKey[i%16]
	}
	if valid != nil && valid(pt) {
		return pt, CipherXOR, nil
	}
	return nil, "", fmt.Errorf("opening %d-byte payload: %w", len(payload), ErrDecrypt)
}

// Seal encrypts with the named cipher and a caller-chosen nonce. The prober
// never sends encrypted packets; Seal exists for the fake node and tests.
func (k *Keys) Seal(name string, plaintext, nonce []byte) ([]byte, error) {
	if name == CipherXOR {
		out := make([]byte, len(plaintext))
		for i := range plaintext {
			out[i] = plaintext[i] ^ k.xorKey[i%16]
		}
		return out, nil
	}
	for _, a := range k.aeads {
		if a.name == name {
			ct := a.aead.Seal(nil, nonce, plaintext, nil)
			return append(ct, nonce...), nil
		}
	}
	return nil, fmt.Errorf("sealing with unknown cipher %q", name)
}
