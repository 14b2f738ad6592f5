package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/neouptime/neo-uptime-node/probe"
	"github.com/neouptime/neo-uptime-node/probe/easytier"
)

// probeCmd probes one node and explains every stage: what an operator runs
// when a node shows offline. The secret comes from a file or NETWORK_SECRET,
// never from a flag, and is never printed.
func probeCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("network-name", "default", "network name to join")
	secretFile := fs.String("network-secret-file", "", "file holding the network secret (else env NETWORK_SECRET)")
	samples := fs.Int("samples", 4, "pings to send")
	interval := fs.Duration("interval", 200*time.Millisecond, "spacing of the pings")
	pingTimeout := fs.Duration("ping-timeout", 2*time.Second, "deadline of one ping")
	timeout := fs.Duration("timeout", 15*time.Second, "deadline of the whole probe")
	routeWait := fs.Duration("route-wait", 3500*time.Millisecond, "wait for the node's route info; 0 skips it")
	caFile := fs.String("ca-file", "", "verify wss against this CA bundle")
	output := fs.String("output", "text", "text or json")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: neo-uptime-node probe URL [flags]   (URL: tcp|udp|ws|wss://host[:port][/path])")
		fs.PrintDefaults()
	}
	// Accept the URL before or after the flags.
	var url string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		url, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if url == "" && fs.NArg() > 0 {
		url = fs.Arg(0)
	}
	var problems []string
	if url == "" {
		problems = append(problems, "a target URL is required")
	}
	if *samples < 1 || *samples > 100 {
		problems = append(problems, fmt.Sprintf("-samples must be in 1..100 (got %d)", *samples))
	}
	if *output != "text" && *output != "json" {
		problems = append(problems, fmt.Sprintf("-output must be text or json (got %q)", *output))
	}
	secret := getenv("NETWORK_SECRET")
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			problems = append(problems, fmt.Sprintf("-network-secret-file: %v", err))
		}
		secret = strings.TrimRight(string(b), "\r\n")
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "probe: %s\n", strings.Join(problems, "; "))
		return exitUsage
	}
	opts := easytier.Options{NetworkName: *name, NetworkSecret: secret, Samples: *samples, Interval: *interval,
		PingTimeout: *pingTimeout, RouteWait: *routeWait, Allow: allowFunc(nil, nil)}
	if *routeWait == 0 {
		opts.RouteWait = -1
	}
	if *caFile != "" {
		cfg, err := caConfig(*caFile)
		if err != nil {
			fmt.Fprintf(stderr, "probe: %v\n", err)
			return exitUsage
		}
		opts.TLS = cfg
	}
	pctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	start := time.Now()
	obs, err := easytier.Probe(pctx, url, opts)
	class := probe.Classify(err)
	if *output == "json" {
		out := struct {
			Target    string `json:"target"`
			Class     string `json:"class"`
			Error     string `json:"error,omitempty"`
			LatencyUS int64  `json:"latency_us"`
			easytier.Observation
		}{url, string(class), errString(err), obs.LatencyUS(), obs}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	} else {
		printObservation(stdout, url, class, err, obs, time.Since(start))
	}
	if class != probe.ClassOK {
		return exitDown
	}
	return exitOK
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func printObservation(w io.Writer, url string, class probe.Class, err error, o easytier.Observation, took time.Duration) {
	fmt.Fprintf(w, "target     %s (%s, dialled %s)\n", url, o.Transport, dash(o.Address))
	fmt.Fprintf(w, "result     %s / %s", class, o.Reason)
	if err != nil {
		fmt.Fprintf(w, " at stage %s: %v", o.Stage, err)
	}
	fmt.Fprintf(w, "\nstages     dns %v  connect %v", o.Timings.DNS.Round(time.Microsecond), o.Timings.Connect.Round(time.Microsecond))
	if o.Timings.TLS > 0 {
		fmt.Fprintf(w, "  tls %v", o.Timings.TLS.Round(time.Microsecond))
	}
	if o.Timings.Upgrade > 0 {
		fmt.Fprintf(w, "  ws-upgrade %v", o.Timings.Upgrade.Round(time.Microsecond))
	}
	fmt.Fprintf(w, "  handshake %v  (total %v)\n", o.Timings.Handshake.Round(time.Microsecond), took.Round(time.Millisecond))
	if o.HandshakeResent > 0 {
		fmt.Fprintf(w, "retries    no handshake reply: started over %d time(s) on a new udp session\n", o.HandshakeResent)
	}
	if o.NodePeerID != 0 {
		fmt.Fprintf(w, "node       peer id %d, network %q, joined as %s network, accepted %v\n", o.NodePeerID, o.NodeNetwork, o.Mode, o.Accepted)
	}
	minUS, maxUS, sd, loss := o.Stats()
	fmt.Fprintf(w, "pings      sent %d, lost %d (%.0f%%)\n", o.Sent, o.Lost, loss*100)
	if len(o.SamplesUS) > 0 {
		var s []string
		for _, v := range o.SamplesUS {
			s = append(s, fmt.Sprintf("%.3f", float64(v)/1000))
		}
		fmt.Fprintf(w, "samples    %s ms\n", strings.Join(s, " "))
		fmt.Fprintf(w, "rtt        easytier %.3f ms (mean of successes), min %.3f, max %.3f, stddev %.3f\n",
			float64(o.LatencyUS())/1000, float64(minUS)/1000, float64(maxUS)/1000, sd/1000)
	}
	if n := o.Node; n != nil {
		foreign := "unknown"
		if n.ForeignKnown {
			foreign = fmt.Sprintf("%d (%d with peers)", n.ForeignNetworks, n.ForeignWithPeers)
		}
		fmt.Fprintf(w, "node info  version %s, hostname %q, public server %v, foreign networks %s", n.FullVersion, n.Hostname, n.IsPublicServer, foreign)
		if n.Cipher != "" {
			fmt.Fprintf(w, ", rpc cipher %s", n.Cipher)
		}
		fmt.Fprintln(w)
	} else if o.NodeMissed != "" {
		fmt.Fprintf(w, "node info  missing: %s\n", o.NodeMissed)
	}
}

// caConfig builds a TLS config that verifies against a CA bundle.
func caConfig(path string) (*tls.Config, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading ca file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca file %s holds no PEM certificate", path)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
