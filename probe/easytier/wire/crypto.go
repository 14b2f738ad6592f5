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

// Keys holds the keys derived from one network secret. Build it once per
// probe with NewKeys; Open tries each cipher EasyTier ships. An AEAD is only
// set up when first tried, so a node on the default cipher costs one. A Keys
// is not safe for concurrent use.
type Keys struct {
	k128  [16]byte // also the XOR cipher's key
	k256  [32]byte
	aeads [3]namedAEAD
	built int // aeads[:built] are set up
}

type namedAEAD struct {
	name string
	aead cipher.AEAD // nil: the key did not make a cipher (never, in practice)
}

// cipherOrder is the order Open tries the AEADs in: EasyTier's default first.
var cipherOrder = [3]string{CipherAES128GCM, CipherAES256GCM, CipherChaCha20}

// NewKeys derives every legacy RPC key from secret.
func NewKeys(secret string) *Keys {
	return &Keys{k128: Key128(secret), k256: Key256(secret)}
}

// aead returns the i-th AEAD of cipherOrder, setting it up on first use.
func (k *Keys) aead(i int) namedAEAD {
	for ; k.built <= i; k.built++ {
		name := cipherOrder[k.built]
		var a cipher.AEAD
		switch name {
		case CipherAES128GCM, CipherAES256GCM:
			key := k.k256[:]
			if name == CipherAES128GCM {
				key = k.k128[:]
			}
			if b, err := aes.NewCipher(key); err == nil {
				a, _ = cipher.NewGCM(b)
			}
		case CipherChaCha20:
			a, _ = chacha20poly1305.New(k.k256[:])
		}
		k.aeads[k.built] = namedAEAD{name, a}
	}
	return k.aeads[i]
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
		for i := range cipherOrder {
			if a := k.aead(i); a.aead == nil {
				continue
			} else if pt, err := a.aead.Open(nil, nonce, sealed, nil); err == nil {
				return pt, a.name, nil
			}
		}
	}
	pt := make([]byte, len(payload))
	for i := range payload {
		pt[i] = payload[i] ^ k.k128[i%16]
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
			out[i] = plaintext[i] ^ k.k128[i%16]
		}
		return out, nil
	}
	for i := range cipherOrder {
		if a := k.aead(i); a.name == name && a.aead != nil {
			ct := a.aead.Seal(nil, nonce, plaintext, nil)
			return append(ct, nonce...), nil
		}
	}
	return nil, fmt.Errorf("sealing with unknown cipher %q", name)
}
