package easytier

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/neouptime/neo-uptime-node/probe/easytier/wire"
)

func sealed(t *testing.T, secret string, msg []byte) []byte {
	t.Helper()
	p, err := wire.NewKeys(secret).Seal(wire.CipherAES128GCM, msg, bytes.Repeat([]byte{7}, 12))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Keys given back are lent again, for their own secret only, and never
// to two borrowers at once.
func TestKeyLender_LendsEachKeysToOneAtATime(t *testing.T) {
	l := keyLender{free: map[string][]*wire.Keys{}}
	a := l.borrow("a")
	a2 := l.borrow("a")
	if a == a2 {
		t.Fatal("the same keys lent twice at once")
	}
	l.giveBack("a", a)
	if b := l.borrow("b"); b == a {
		t.Fatal("secret a's keys lent for secret b")
	} else if _, _, err := b.Open(sealed(t, "b", []byte("for b")), nil); err != nil {
		t.Fatalf("keys lent for b do not open b's payload: %v", err)
	}
	again := l.borrow("a")
	if again != a {
		t.Error("keys given back were not lent again")
	}
	if other := l.borrow("a"); other == again {
		t.Error("keys lent again while still lent")
	}
}

// What the lender keeps is bounded: lenderSecrets secrets, lenderPerSecret
// keys each.
func TestKeyLender_Bounds(t *testing.T) {
	l := keyLender{free: map[string][]*wire.Keys{}}
	for i := range lenderSecrets + 10 {
		s := fmt.Sprint("secret-", i)
		l.giveBack(s, l.borrow(s))
	}
	if n := len(l.free); n != lenderSecrets {
		t.Errorf("keeps keys of %d secrets, want %d", n, lenderSecrets)
	}
	var ks []*wire.Keys
	for range lenderPerSecret + 3 {
		ks = append(ks, l.borrow("secret-0"))
	}
	for _, k := range ks {
		l.giveBack("secret-0", k)
	}
	if n := len(l.free["secret-0"]); n != lenderPerSecret {
		t.Errorf("keeps %d keys of one secret, want %d", n, lenderPerSecret)
	}
}

// Many sessions decrypting at once (run with -race: a Keys shared between
// two of them would show).
func TestKeyLender_Concurrent(t *testing.T) {
	l := keyLender{free: map[string][]*wire.Keys{}}
	payload := sealed(t, "s", []byte("route push"))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				k := l.borrow("s")
				pt, _, err := k.Open(payload, nil)
				l.giveBack("s", k)
				if err != nil || string(pt) != "route push" {
					t.Errorf("Open = %q, %v", pt, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
