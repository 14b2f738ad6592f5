package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neouptime/neo-uptime-node/probe"
	"github.com/neouptime/neo-uptime-node/probe/easytier"
	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
	"github.com/neouptime/neo-uptime-node/report"
	"github.com/neouptime/neo-uptime-node/state"
)

func TestProbeCmd_ExplainsEveryStage(t *testing.T) {
	f := startFake(t, &easytiertest.Fake{NetworkName: "ops-net", NetworkSecret: "ops-SECRET-77", Foreign: []string{"a", "b"}, Encrypt: "aes-gcm"})
	secretFile := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secretFile, []byte("ops-SECRET-77\n"), 0o600)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"probe", f.TCPURL(), "--network-name", "ops-net", "--network-secret-file", secretFile, "--samples", "3"},
		&out, &errb, func(string) string { return "" })
	text := out.String()
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, text, errb.String())
	}
	for _, want := range []string{"result     ok / ok", "connect", "handshake", "pings      sent 3, lost 0", "samples", "easytier", "version 2.6.4-fake0000", "foreign networks 2", "rpc cipher aes-gcm"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// JSON output, secret from the environment, a wrong one: exit 3.
	out.Reset()
	code = run(context.Background(), []string{"probe", f.WSURL(), "--network-name", "ops-net", "--output", "json"},
		&out, &errb, func(k string) string { return map[string]string{"NETWORK_SECRET": "not-it"}[k] })
	var res struct {
		Class, Reason string
		Timings       map[string]int64
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || code != exitDown || res.Class != "protocol" || res.Reason != "wrong_secret" || res.Timings["upgrade_us"] <= 0 {
		t.Errorf("wrong secret: exit %d, %+v, %v\n%s", code, res, err, out.String())
	}
	if strings.Contains(out.String()+errb.String()+text, "ops-SECRET-77") || strings.Contains(out.String(), "not-it") {
		t.Error("the network secret was printed")
	}
	// The secret is never taken from a flag.
	if code := run(context.Background(), []string{"probe", f.TCPURL(), "--network-secret", "x"}, &out, &errb, func(string) string { return "" }); code != exitUsage {
		t.Errorf("--network-secret flag accepted (exit %d)", code)
	}
}

// A udp probe that had to start over says so, in the probe command's
// text and json, and in the run report's line for the peer.
func TestProbeCmd_ShowsAUDPRestart(t *testing.T) {
	f := startFake(t, &easytiertest.Fake{NetworkName: "ops-net", NetworkSecret: "s"})
	env := func(k string) string { return map[string]string{"NETWORK_SECRET": "s"}[k] }
	for _, output := range []string{"text", "json"} {
		relay := easytiertest.RelayTo(t, f.UDPURL(), easytiertest.RelayFaults{DropNodeHandshakes: 1})
		var out, errb bytes.Buffer
		code := run(context.Background(), []string{"probe", relay.URL(), "--network-name", "ops-net", "--samples", "1", "--output", output}, &out, &errb, env)
		if code != exitOK {
			t.Fatalf("%s: exit %d\n%s%s", output, code, out.String(), errb.String())
		}
		if output == "text" && !strings.Contains(out.String(), "started over 1 time(s) on a new udp session") {
			t.Errorf("text output does not show the restart:\n%s", out.String())
		}
		if output == "json" && !strings.Contains(out.String(), `"handshake_resent": 1`) {
			t.Errorf("json output does not show the restart:\n%s", out.String())
		}
	}
	pr := newPeerResult(report.Peer{ID: 7}, probe.Result{Obs: easytier.Observation{HandshakeResent: 2}})
	if b, _ := json.Marshal(pr); !strings.Contains(string(b), `"handshake_resent":2`) {
		t.Errorf("run report line lacks the restarts: %s", b)
	}
}

// TestRun_DownAfterUpAfter checks the hysteresis over consecutive runs.
func TestRun_DownAfterUpAfter(t *testing.T) {
	node := startFake(t, &easytiertest.Fake{NetworkName: "n"})
	up := peer(1, node.TCPURL(), "n", "")
	down := peer(1, "tcp://127.0.0.254:1", "n", "")
	be := &testBackend{}
	srv := httptest.NewServer(be)
	defer srv.Close()
	env := map[string]string{"BACKEND_BASE_URL": srv.URL + "/api", "API_KEY": "test-key-9b1", "DATABASE_PATH": filepath.Join(t.TempDir(), "s.db")}
	steps := []struct {
		peer     map[string]any
		reported string // "" = held, nothing sent
	}{
		{up, "online"}, {down, ""}, {down, "offline"}, {down, "offline"}, {up, ""}, {up, ""}, {up, "online"},
	}
	for i, st := range steps {
		be.mu.Lock()
		be.peers, be.puts = []map[string]any{st.peer}, nil
		be.mu.Unlock()
		code, rep, logs := runInProcess(t, env, "-down-after", "2", "-up-after", "3", "-samples", "1", "-deadline", "4s", "-report-reserve", "2s")
		if code != exitOK {
			t.Fatalf("step %d: exit %d\n%s", i, code, logs)
		}
		got := ""
		if r := be.reports()[1]; len(r) == 1 {
			got = r[0].Status
		}
		if got != st.reported {
			t.Errorf("step %d: reported %q (decision %q), want %q", i, got, rep.Peers[0].Decision, st.reported)
		}
	}
	st, err := (&state.FileStore{Path: env["DATABASE_PATH"]}).Load(context.Background())
	if err != nil || st.History[1].Reported != "online" || st.History[1].ConsecOK != 3 {
		t.Errorf("history = %+v, %v", st.History[1], err)
	}
}

func TestAllowFunc_Policy(t *testing.T) {
	allow := func(s ...string) []netip.Prefix {
		var p []netip.Prefix
		for _, x := range s {
			p = append(p, netip.MustParsePrefix(x))
		}
		return p
	}
	for _, tc := range []struct {
		allow, deny []netip.Prefix
		addr        string
		ok          bool
	}{
		{nil, nil, "203.0.113.5", true},
		{nil, nil, "169.254.169.254", false},
		{nil, nil, "fd00:ec2::254", false},
		{nil, nil, "::ffff:169.254.169.254", false},
		{nil, nil, "fe80::1", false},
		{nil, nil, "0.0.0.0", false},
		{nil, nil, "::", false},
		{allow("10.0.0.0/8"), nil, "10.1.2.3", true},
		{allow("10.0.0.0/8"), nil, "203.0.113.5", false},
		{allow("0.0.0.0/0"), nil, "169.254.169.254", false}, // deny wins
		{nil, allow("203.0.113.0/24"), "203.0.113.5", false},
	} {
		err := allowFunc(tc.allow, tc.deny)(netip.MustParseAddr(tc.addr))
		if (err == nil) != tc.ok {
			t.Errorf("allowFunc(allow %v, deny %v)(%s) = %v, want ok=%v", tc.allow, tc.deny, tc.addr, err, tc.ok)
		}
	}
}
