package rxstamp

import (
	"testing"
	"time"
)

func TestArrival_TrustsOnlyPlausibleStamps(t *testing.T) {
	if d := time.Since(Arrival(time.Time{})); d < 0 || d > 50*time.Millisecond {
		t.Errorf("no stamp: arrival %v from now, want now", d)
	}
	got := Arrival(time.Now().Round(0).Add(-3 * time.Millisecond))
	if d := time.Since(got); d < 3*time.Millisecond || d > 50*time.Millisecond {
		t.Errorf("stamp 3 ms ago: arrival %v ago", d)
	}
	if got.Round(0) == got {
		t.Error("arrival lost the monotonic clock reading")
	}
	for _, bad := range []time.Duration{-time.Second, 2 * time.Second} {
		if d := time.Since(Arrival(time.Now().Round(0).Add(-bad))); d < 0 || d > 50*time.Millisecond {
			t.Errorf("stamp %v ago: arrival %v from now, want now (not trusted)", bad, d)
		}
	}
}
