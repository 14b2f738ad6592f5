package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier"
	"github.com/neouptime/neo-uptime-node/probe/easytier/wire"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Class
	}{
		{nil, ClassOK},
		{fmt.Errorf("dialing: %w", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), ClassRefused},
		{fmt.Errorf("dialing: %w", syscall.EHOSTUNREACH), ClassUnreachable},
		{&net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}, ClassDNS},
		{&net.DNSError{Err: "timeout", Name: "x", IsTimeout: true}, ClassTimeout},
		{fmt.Errorf("waiting: %w", context.DeadlineExceeded), ClassTimeout},
		{fmt.Errorf("waiting: %w", os.ErrDeadlineExceeded), ClassTimeout},
		{fmt.Errorf("waiting: %w", context.Canceled), ClassCanceled},
		{fmt.Errorf("x: %w", easytier.ErrNoPong), ClassTimeout},
		{fmt.Errorf("x: %w", easytier.ErrWrongSecret), ClassProtocol},
		{fmt.Errorf("x: %w", easytier.ErrSecureModeRequired), ClassProtocol},
		{fmt.Errorf("x: %w", easytier.ErrUnsupportedProtocol), ClassProtocol},
		{fmt.Errorf("x: %w", wire.ErrTooLong), ClassProtocol},
		{fmt.Errorf("x: %w", easytier.ErrUnsafeSend), ClassInternal},
		{fmt.Errorf("%w: boom", ErrPanic), ClassInternal},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

func TestRunner_OrderBoundPanicAndDeadline(t *testing.T) {
	var inFlight, peak atomic.Int64
	probe := func(ctx context.Context, tg Target) (easytier.Observation, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		switch tg.Name {
		case "panic":
			panic("bug in a probe")
		case "slow":
			<-ctx.Done()
			return easytier.Observation{}, fmt.Errorf("waiting: %w", ctx.Err())
		}
		time.Sleep(5 * time.Millisecond)
		return easytier.Observation{SamplesUS: []int64{100}}, nil
	}
	var targets []Target
	for i := 0; i < 40; i++ {
		targets = append(targets, Target{ID: int64(i), Name: "ok"})
	}
	targets[3].Name, targets[7].Name = "panic", "slow"
	r := &Runner{Concurrency: 4, Timeout: time.Minute, Probe: probe}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res := r.Run(ctx, targets)
	if peak.Load() > 4 {
		t.Errorf("peak concurrency %d, want <= 4", peak.Load())
	}
	for i, rr := range res {
		if rr.Target.ID != int64(i) {
			t.Fatalf("result %d is for target %d: order not kept", i, rr.Target.ID)
		}
	}
	if res[3].Class != ClassInternal || !errors.Is(res[3].Err, ErrPanic) || res[3].Known() {
		t.Errorf("panicking probe = %s (%v), want internal and unknown", res[3].Class, res[3].Err)
	}
	if res[7].Class != ClassCanceled || res[7].Known() {
		t.Errorf("probe cut by the job deadline = %s/%s, want canceled and unknown", res[7].Class, res[7].Reason)
	}
	if res[0].Class != ClassOK || !res[0].Online() {
		t.Errorf("healthy probe = %s", res[0].Class)
	}

	// Targets never started before the deadline are canceled, not failed.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	for _, rr := range (&Runner{Probe: probe}).Run(ctx2, targets[:3]) {
		if rr.Class != ClassCanceled || rr.Reason != "not_started" {
			t.Errorf("unstarted target = %s/%s, want canceled/not_started", rr.Class, rr.Reason)
		}
	}
}
