// Command neo-uptime-node probes EasyTier nodes with EasyTier's own
// protocol and reports whether each is up, and how far away, to the
// NeoUptime backend. One invocation fetches, probes, reports, saves and
// exits; the same binary serves AWS Lambda, cron, Kubernetes CronJobs and,
// with -every, a long-running container.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/neouptime/neo-uptime-node/probe"
	"github.com/neouptime/neo-uptime-node/probe/easytier"
	"github.com/neouptime/neo-uptime-node/report"
	"github.com/neouptime/neo-uptime-node/state"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes; see the README for why a run with down peers exits 0.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
	exitDown   = 3
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// run is main without the process: testable end to end.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		stop := startPeaks(getenv, stderr)
		defer stop()
		return runCmd(ctx, args, stdout, stderr, getenv)
	case "probe":
		return probeCmd(ctx, args, stdout, stderr, getenv)
	case "demo":
		return demoCmd(ctx, args, stdout, stderr, getenv)
	case "version":
		fmt.Fprintf(stdout, "neo-uptime-node %s\n", version)
		return exitOK
	case "help":
		fmt.Fprintln(stdout, usageText)
		return exitOK
	}
	fmt.Fprintf(stderr, "unknown command %q\n\n%s\n", cmd, usageText)
	return exitUsage
}

const usageText = `usage: neo-uptime-node [run] [flags]     one run: fetch, probe, report, save
       neo-uptime-node probe URL [flags]   probe one node and explain the result
       neo-uptime-node demo [flags]        run once against an embedded demo backend
       neo-uptime-node version
Run 'neo-uptime-node run -h' for every flag.`

// newLogger builds the JSON or text logger at the configured level.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	switch level {
	case "trace", "debug":
		lv = slog.LevelDebug
	case "warn", "warning":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	case "off":
		lv = slog.LevelError + 8
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// loadConfig parses and validates; it returns the exit code on failure.
func loadConfig(args []string, stderr io.Writer, getenv func(string) string, needBackend bool) (*Config, int) {
	cfg := &Config{}
	fs := newFlagSet("neo-uptime-node", cfg)
	fs.SetOutput(stderr)
	if err := parseConfig(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, exitOK
		}
		fmt.Fprintf(stderr, "configuration: %v\n", err)
		return nil, exitUsage
	}
	if err := cfg.resolveSecrets(); err != nil {
		fmt.Fprintf(stderr, "configuration: %v\n", err)
		return nil, exitUsage
	}
	if err := cfg.validate(needBackend); err != nil {
		fmt.Fprintf(stderr, "configuration:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return nil, exitUsage
	}
	return cfg, -1
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg, code := loadConfig(args, stderr, getenv, true)
	if cfg == nil {
		return code
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if cfg.CheckConfig {
		fmt.Fprintln(stdout, "configuration ok")
		return exitOK
	}
	gc := newGCFloor(getenv, os.ReadFile, debug.SetMemoryLimit(-1))
	gc.arm() // now, for the set-up too; each run arms it again
	if getenv("AWS_LAMBDA_RUNTIME_API") != "" {
		return lambdaMain(ctx, cfg, log, gc)
	}
	job, err := buildJob(ctx, cfg, log)
	if err != nil {
		log.Error("setting up", keyErr, err)
		return exitFailed
	}
	job.GC = gc
	if every := cfg.loopInterval(); every > 0 {
		return loop(ctx, job, every, stdout, log)
	}
	return once(ctx, job, stdout, log)
}

// once runs the job one time and maps the outcome to an exit code.
func once(ctx context.Context, job *Job, stdout io.Writer, log *slog.Logger) int {
	rep, err := job.Run(ctx)
	if rep != nil {
		logSummary(log, rep)
		writeMetrics(job.Cfg, rep, err, log)
		if job.Cfg.Output == "json" {
			_ = writeJSON(stdout, rep)
		} else {
			writeTable(stdout, rep)
		}
	}
	if err != nil {
		log.Error("run failed", keyErr, err)
		return exitFailed
	}
	if job.Cfg.FailOnDown && rep.Down() > 0 {
		return exitDown
	}
	return exitOK
}

// loop repeats runs every interval until SIGTERM/SIGINT. On a signal the
// run in progress stops probing at once but still delivers what it measured
// and saves state (bounded by -report-reserve), then the process exits.
func loop(ctx context.Context, job *Job, every time.Duration, stdout io.Writer, log *slog.Logger) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	stop := make(chan struct{})
	j := *job
	j.Stop = stop
	log.Info("loop mode", "every", every.String())
	code := exitOK
	for {
		start := time.Now()
		done := make(chan int, 1)
		go func() { done <- once(ctx, &j, stdout, log) }()
		select {
		case code = <-done:
		case s := <-sigs:
			log.Info("stopping on signal: finishing the report pass", "signal", s.String())
			close(stop)
			return <-done
		}
		// A next run later than kept connections are reused: close them
		// now rather than leave them open (half closed by a backend whose
		// keep-alive ends sooner) until then.
		if time.Until(start.Add(every)) > report.IdleFor {
			j.closeIdle()
		}
		select {
		case s := <-sigs:
			log.Info("stopping on signal", "signal", s.String())
			return code
		case <-ctx.Done():
			return code
		case <-time.After(max(time.Until(start.Add(every)), 0)):
		}
	}
}

// buildJob makes the backend client, store and runner once; Lambda reuses
// them across warm invocations.
func buildJob(ctx context.Context, cfg *Config, log *slog.Logger) (*Job, error) {
	if err := fetchAPIKey(ctx, cfg); err != nil {
		return nil, err
	}
	client, err := report.New(report.Options{BaseURL: cfg.BackendBaseURL, APIKey: cfg.APIKey,
		UserAgent: "neo-uptime-node/" + version, CAFile: cfg.BackendCAFile, Conns: cfg.ReportConns})
	if err != nil {
		return nil, err
	}
	st, err := newStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	opts, err := probeOptions(cfg)
	if err != nil {
		return nil, err
	}
	return &Job{Cfg: cfg, Backend: client, Store: st, Log: log, Owner: newOwner(), Sealer: state.NewSealer(cfg.APIKey),
		Runner: &probe.Runner{Concurrency: cfg.Concurrency, Timeout: cfg.ProbeTimeout, Options: opts}}, nil
}

// probeOptions turns the configuration into prober options.
func probeOptions(cfg *Config) (easytier.Options, error) {
	opts := easytier.Options{Samples: cfg.Samples, Interval: cfg.HealthCheckInterval, PingTimeout: cfg.PingTimeout,
		RouteWait: cfg.RouteWait, Allow: allowFunc(cfg.AllowCIDRs, cfg.DenyCIDRs)}
	if cfg.RouteWait == 0 {
		opts.RouteWait = -1
	}
	if cfg.NodeCAFile != "" {
		tlsCfg, err := caConfig(cfg.NodeCAFile)
		if err != nil {
			return opts, err
		}
		opts.TLS = tlsCfg
	}
	return opts, nil
}

// allowFunc vets target addresses: never the deny list (link-local and
// cloud metadata by default), and only the allow list when one is given.
func allowFunc(allow, deny []netip.Prefix) func(netip.Addr) error {
	deny = append(append([]netip.Prefix{}, defaultDeny...), deny...)
	return func(a netip.Addr) error {
		a = a.Unmap()
		for _, p := range deny {
			if p.Contains(a) {
				return fmt.Errorf("%s is in denied prefix %s", a, p)
			}
		}
		if len(allow) == 0 {
			return nil
		}
		for _, p := range allow {
			if p.Contains(a) {
				return nil
			}
		}
		return fmt.Errorf("%s is outside the allowed prefixes", a)
	}
}

// newStore opens the configured state store.
func newStore(ctx context.Context, cfg *Config) (store, error) {
	if cfg.StateBackend == "dynamodb" {
		return newDynamoStore(ctx, cfg)
	}
	return &state.FileStore{Path: cfg.DatabasePath}, nil
}

// newOwner names this process in the run lease.
func newOwner() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
