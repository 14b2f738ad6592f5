package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
)

// demoBackend is a tiny NeoUptime backend on loopback that serves a fixed
// peer list and records every status report.
type demoBackend struct {
	peers   []map[string]any
	apiKey  string
	mu      sync.Mutex
	reports []json.RawMessage
}

func (d *demoBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("x-api-key") != d.apiKey {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"code":401,"message":"bad api key"}`)
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/peers":
		b, _ := json.Marshal(map[string]any{"code": 200, "message": "Success", "data": map[string]any{"peers": d.peers}})
		w.Write(b) //nolint:errcheck
	case r.Method == http.MethodPut && r.URL.Path == "/nodes/status":
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		d.mu.Lock()
		d.reports = append(d.reports, b)
		d.mu.Unlock()
		fmt.Fprint(w, `{"code":200,"message":"Success"}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"code":404,"message":"not found"}`)
	}
}

func hostPort(u string) (string, int) {
	h, p, _ := net.SplitHostPort(u[len("tcp://"):])
	n, _ := strconv.Atoi(p)
	return h, n
}

// demoCmd starts the demo backend and nodes, runs one invocation against
// them and prints the results and what the backend received.
func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fake := fs.Bool("fake", false, "use fake nodes even when the easytier-pyo3 package is installed")
	dbPath := fs.String("database-path", "", "state file (default: a temporary directory)")
	output := fs.String("output", "text", "text or json")
	logLevel := fs.String("log-level", "info", "log level")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	log := newLogger(stderr, *logLevel, "text")
	be := &demoBackend{apiKey: "demo-api-key"}
	const network, secret = "demo-net", "demo-secret"

	kind := "fake (Go)"
	var stops []func()
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	if py := easytiertest.Python(); py != "" && !*fake {
		port, err := easytiertest.FreePort()
		if err == nil {
			n, err := easytiertest.StartRealProcess(py, easytiertest.RealConfig{Port: port, NetworkName: network,
				NetworkSecret: secret, Hostname: "demo-real-node"}, io.Discard)
			if n != nil {
				stops = append(stops, n.Stop)
			}
			if err == nil {
				kind = "real EasyTier " + n.Version + " (easytier-pyo3)"
				for i, scheme := range []string{"tcp", "udp", "ws", "wss"} {
					p := port + map[string]int{"tcp": 0, "udp": 0, "ws": 1, "wss": 2}[scheme]
					be.peers = append(be.peers, map[string]any{"id": i + 1, "name": "real " + scheme, "host": "127.0.0.1",
						"port": p, "protocol": scheme, "network_name": network, "network_secret": secret})
				}
			} else {
				log.Warn("real node unavailable, using fake nodes", keyErr, err)
			}
		}
	}
	if len(be.peers) == 0 {
		f, err := easytiertest.StartFake(&easytiertest.Fake{NetworkName: network, NetworkSecret: secret, Hostname: "demo-fake-node",
			Foreign: []string{"tenant-a"}, Encrypt: "aes-gcm"})
		if err != nil {
			log.Error("starting fake node", keyErr, err)
			return exitFailed
		}
		stops = append(stops, f.Close)
		h, p := hostPort(f.TCPURL())
		_, up := hostPort("tcp://" + f.UDPURL()[len("udp://"):])
		be.peers = append(be.peers,
			map[string]any{"id": 1, "name": "fake tcp", "host": h, "port": p, "protocol": "tcp", "network_name": network, "network_secret": secret},
			map[string]any{"id": 2, "name": "fake udp", "host": h, "port": up, "protocol": "udp", "network_name": network, "network_secret": secret})
	}
	// Nodes that fail, to show each class.
	silent, err := easytiertest.StartFake(&easytiertest.Fake{NetworkName: network, NetworkSecret: secret, Behavior: easytiertest.AcceptSilence})
	if err != nil {
		log.Error("starting fake node", keyErr, err)
		return exitFailed
	}
	stops = append(stops, silent.Close)
	sh, sp := hostPort(silent.TCPURL())
	closed, _ := easytiertest.FreePort()
	be.peers = append(be.peers,
		map[string]any{"id": 10, "name": "wrong secret", "host": "127.0.0.1", "port": be.peers[0]["port"], "protocol": "tcp", "network_name": network, "network_secret": "not-the-secret"},
		map[string]any{"id": 11, "name": "nothing listening", "host": "127.0.0.1", "port": closed, "protocol": "tcp", "network_name": network},
		map[string]any{"id": 12, "name": "accepts, never answers", "host": sh, "port": sp, "protocol": "tcp", "network_name": network, "network_secret": secret},
		map[string]any{"id": 13, "name": "quic node", "host": "127.0.0.1", "port": 11012, "protocol": "quic"},
	)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Error("starting demo backend", keyErr, err)
		return exitFailed
	}
	srv := &http.Server{Handler: be, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck
	defer srv.Close()

	path := *dbPath
	if path == "" {
		dir, err := os.MkdirTemp("", "neo-uptime-demo-")
		if err != nil {
			log.Error("creating state directory", keyErr, err)
			return exitFailed
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "neo-uptime-node.db")
	}
	fmt.Fprintf(stdout, "demo: backend http://%s, nodes: %s, state %s\n\n", ln.Addr(), kind, path)
	env := map[string]string{"BACKEND_BASE_URL": "http://" + ln.Addr().String(), "API_KEY": be.apiKey, "DATABASE_PATH": path}
	code := runCmd(ctx, []string{"-output", *output, "-deadline", "12s", "-probe-timeout", "6s", "-log-level", *logLevel, "-log-format", "text", "-peer-fetch-interval", "0"},
		stdout, stderr, func(k string) string { return env[k] })
	be.mu.Lock()
	defer be.mu.Unlock()
	fmt.Fprintf(stdout, "\nthe backend received %d status reports:\n", len(be.reports))
	for _, r := range be.reports {
		fmt.Fprintf(stdout, "  PUT /nodes/status %s\n", r)
	}
	return code
}
