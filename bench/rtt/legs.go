package main

import (
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier/wire"
)

// legs splits udp round trips into their legs (-legs): the relay notes
// when each ping and pong of the probed connection reached it (kernel
// stamp) and left it, the prober when it sent each ping and when each
// pong arrived. Printed per case on stderr, as medians in µs over the
// samples the reported figure uses (the first left out).
type legs struct {
	mu    sync.Mutex
	me    uint32 // the prober's peer id; 0 before its first packet
	relay map[legKey]legTimes
	sent  map[uint32]time.Time // our pings by seq
	acc   map[string][]float64 // leg name → µs
	half  time.Duration        // the injected one-way delay
}

func (l *legs) setHalf(d time.Duration) {
	l.mu.Lock()
	l.half = d
	l.mu.Unlock()
}

type legKey struct {
	ours bool // our ping or its pong, else the node's ping or our pong to it
	pong bool
	seq  uint32
}

type legTimes struct{ arrived, left time.Time }

var trace *legs // nil unless -legs

func newLegs() *legs { return &legs{acc: map[string][]float64{}} }

// start begins a probe: nothing of the previous one is kept.
func (l *legs) start() {
	l.mu.Lock()
	l.me, l.relay, l.sent = 0, map[legKey]legTimes{}, map[uint32]time.Time{}
	l.mu.Unlock()
}

// key classifies a relayed datagram; ok is false for anything but the
// probed connection's pings and pongs.
func (l *legs) key(b []byte) (legKey, bool) {
	_, typ, body, err := wire.ParseUDP(b)
	if err != nil || typ != wire.UDPData {
		return legKey{}, false
	}
	h, payload, err := wire.ParsePacket(body)
	if err != nil || (h.Type != wire.TypePing && h.Type != wire.TypePong) {
		return legKey{}, false
	}
	seq, err := wire.PingSeq(payload)
	if err != nil {
		return legKey{}, false
	}
	l.mu.Lock()
	me := l.me
	l.mu.Unlock()
	if me == 0 {
		return legKey{}, false
	}
	// A pong is its ping's bytes with the type changed: the pong to our
	// ping is "from" us too.
	return legKey{ours: h.From == me, pong: h.Type == wire.TypePong, seq: seq}, true
}

// note records when a datagram reached the relay or, leaving, left it.
func (l *legs) note(k legKey, at time.Time, leaving bool) {
	l.mu.Lock()
	t := l.relay[k]
	if leaving {
		t.left = at
	} else {
		t.arrived = at
	}
	l.relay[k] = t
	l.mu.Unlock()
}

// onSend is the prober's OnSend hook.
func (l *legs) onSend(p []byte) {
	now := time.Now()
	h, payload, err := wire.ParsePacket(p)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if h.Type == wire.TypePong {
		return // the node's ping echoed: "from" the node
	}
	l.me = h.From
	if h.Type == wire.TypePing {
		if seq, err := wire.PingSeq(payload); err == nil {
			l.sent[seq] = now
		}
	}
}

// finish adds a probe's legs: samples are its RTTs in µs by seq order
// (a fixed-delay link loses and reorders nothing).
func (l *legs) finish(samples []int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	halfDelay := l.half
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	for i := 1; i < len(samples); i++ {
		seq := uint32(i)
		sent, ok := l.sent[seq]
		ping, pong := l.relay[legKey{ours: true, seq: seq}], l.relay[legKey{ours: true, pong: true, seq: seq}]
		if !ok || ping.left.IsZero() || pong.left.IsZero() {
			continue
		}
		got := sent.Add(time.Duration(samples[i]) * time.Microsecond)
		l.acc["1 our send → relay"] = append(l.acc["1 our send → relay"], us(ping.arrived.Sub(sent)))
		l.acc["2 relay hold − nominal (ping)"] = append(l.acc["2 relay hold − nominal (ping)"], us(ping.left.Sub(ping.arrived)-halfDelay))
		l.acc["3 node: relay → node → relay"] = append(l.acc["3 node: relay → node → relay"], us(pong.arrived.Sub(ping.left)))
		l.acc["4 relay hold − nominal (pong)"] = append(l.acc["4 relay hold − nominal (pong)"], us(pong.left.Sub(pong.arrived)-halfDelay))
		l.acc["5 relay → our rx stamp"] = append(l.acc["5 relay → our rx stamp"], us(got.Sub(pong.left)))
	}
	for k, t := range l.relay {
		if k.ours || k.pong {
			continue
		}
		if p := l.relay[legKey{pong: true, seq: k.seq}]; !t.left.IsZero() && !p.arrived.IsZero() {
			l.acc["6 us: relay → prober → relay (node's pings)"] = append(l.acc["6 us: relay → prober → relay (node's pings)"], us(p.arrived.Sub(t.left)))
		}
	}
}

// print writes the medians of the case's legs and starts afresh.
func (l *legs) print(tr, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := make([]string, 0, len(l.acc))
	for k := range l.acc {
		names = append(names, k)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return
	}
	fmt.Fprintf(os.Stderr, "legs %s %s:", tr, name)
	for _, k := range names {
		v := l.acc[k]
		sort.Float64s(v)
		fmt.Fprintf(os.Stderr, "  %s %.1f (n %d)", k, v[len(v)/2], len(v))
	}
	fmt.Fprintln(os.Stderr)
	l.acc = map[string][]float64{}
}
