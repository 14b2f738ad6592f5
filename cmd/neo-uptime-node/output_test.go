package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/neouptime/neo-uptime-node/report"
)

// countingWriter counts the Write calls that reach it.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.Buffer.Write(p)
}

// The text report lines peers up in columns, and reaches stdout in a
// few writes however many peers (tabwriter alone writes every cell and
// its padding apart).
func TestWriteTable(t *testing.T) {
	two := 2
	r := &RunReport{PeerSource: "backend", Reported: 1, Undelivered: 1, Rejected: 0, Peers: []PeerResult{
		{ID: 1, Name: "tokyo", Target: "tcp://192.0.2.1:11010", Class: "ok", Reason: "ok", LatencyUS: 20345, Version: "2.6.4", Foreign: &two,
			Decision: "report", Reported: &report.Status{ID: 1, Status: "online", ResponseTime: 20, PeerCount: 3}, Delivered: true},
		{ID: 22, Target: "udp://192.0.2.2:11010", Class: "timeout", Reason: "no_pong", Loss: 1,
			Decision: "report", Reported: &report.Status{ID: 22, Status: "offline"}},
	}}
	var w countingWriter
	writeTable(&w, r)
	want := strings.Join([]string{
		"ID  NAME   TARGET                 CLASS    REASON   RTT ms  LOSS  VERSION  FOREIGN  REPORTED",
		"1   tokyo  tcp://192.0.2.1:11010  ok       ok       20.34   0%    2.6.4    2        online 20ms pc=3",
		"22  -      udp://192.0.2.2:11010  timeout  no_pong  -       100%  -        -        offline 0ms pc=0 (pending)",
		"",
		"2 peers from backend; 1 reports delivered, 1 kept for the next run (0 of them refused by the backend)",
		""}, "\n")
	if w.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", w.String(), want)
	}

	r.Peers = nil
	for i := range 1000 {
		r.Peers = append(r.Peers, PeerResult{ID: int64(i), Target: fmt.Sprintf("tcp://127.0.0.%d:11010", i%250), Class: "ok", Reason: "ok", LatencyUS: 20345, Decision: "report"})
	}
	w = countingWriter{}
	writeTable(&w, r)
	if lines := strings.Count(w.String(), "\n"); lines != 1003 {
		t.Fatalf("%d lines for 1,000 peers, want 1,003", lines)
	}
	if w.writes > 5 {
		t.Errorf("%d writes for 1,000 peers' table (%d bytes), want a few", w.writes, w.Len())
	}
}
