package easytier

import (
	"sync"

	"github.com/neouptime/neo-uptime-node/probe/easytier/wire"
)

// keyLender lends the keys derived from a network secret to one session
// at a time. Deriving them (two SipHash chains) and setting up AES-GCM
// cost ~1.4 µs and 1.7 KB, the same for every probe of a network, and a
// wire.Keys is not safe for concurrent use: each session made its own,
// ~3 ms and a thousand AES-GCM setups in a run of 1,000 peers of one
// network (pprof). A session borrows keys only around one decryption, so
// such a run now sets up about as many as run at once.
type keyLender struct {
	mu   sync.Mutex
	free map[string][]*wire.Keys // by secret
}

// What the lender keeps between loans: keys of at most lenderSecrets
// secrets (the rest are derived anew each time), at most lenderPerSecret
// of each. At ~1.7 KB a Keys, under 2 MB in all.
const (
	lenderSecrets   = 256
	lenderPerSecret = 4
)

var lender = keyLender{free: map[string][]*wire.Keys{}}

// borrow returns keys for secret, to be given back when done with.
func (l *keyLender) borrow(secret string) *wire.Keys {
	l.mu.Lock()
	if ks := l.free[secret]; len(ks) > 0 {
		k := ks[len(ks)-1]
		l.free[secret] = ks[:len(ks)-1]
		l.mu.Unlock()
		return k
	}
	l.mu.Unlock()
	return wire.NewKeys(secret)
}

// giveBack returns keys borrow made for secret; they must not be used
// after it.
func (l *keyLender) giveBack(secret string, k *wire.Keys) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ks, known := l.free[secret]
	if !known && len(l.free) >= lenderSecrets {
		return
	}
	if len(ks) < lenderPerSecret {
		l.free[secret] = append(ks, k)
	}
}
