package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3"
)

// seconds is a duration flag that also takes a bare number of seconds, as
// the original's PEER_FETCH_INTERVAL=60 and friends did.
type seconds struct{ d *time.Duration }

func (s seconds) String() string {
	if s.d == nil {
		return ""
	}
	return s.d.String()
}

func (s seconds) Set(v string) error {
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		*s.d = time.Duration(n * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want a duration like 30s or a number of seconds")
	}
	*s.d = d
	return nil
}

// cidrList is a repeatable, comma-separated list of prefixes.
type cidrList struct{ p *[]netip.Prefix }

func (c cidrList) String() string {
	if c.p == nil {
		return ""
	}
	var s []string
	for _, p := range *c.p {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

func (c cidrList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			a, aerr := netip.ParseAddr(part)
			if aerr != nil {
				return fmt.Errorf("%q is not a CIDR prefix", part)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		*c.p = append(*c.p, p.Masked())
	}
	return nil
}

// Config is every option of one invocation.
type Config struct {
	BackendBaseURL string
	APIKey         string `json:"-"`
	APIKeyFile     string
	APIKeySSM      string
	APIKeySecretID string
	Region         string
	BackendCAFile  string

	PeerFetchInterval    time.Duration // max age of the cached peer list reused without fetching
	StatusReportInterval time.Duration // loop-mode repeat interval
	HealthCheckInterval  time.Duration // spacing of ping samples
	PeerCacheMaxAge      time.Duration // how old a cached list may be when the backend is down

	DatabasePath  string
	StateBackend  string
	DynamoTable   string
	DynamoEndpnt  string
	LeaseTTL      time.Duration
	Deadline      time.Duration
	ReportReserve time.Duration
	ProbeTimeout  time.Duration
	PingTimeout   time.Duration
	RouteWait     time.Duration
	Concurrency   int
	ReportConns   int
	Samples       int
	DownAfter     int
	UpAfter       int
	Output        string
	FailOnDown    bool
	CheckConfig   bool
	Every         time.Duration
	Loop          bool
	NodeCAFile    string
	AllowCIDRs    []netip.Prefix
	DenyCIDRs     []netip.Prefix
	MetricsFile   string
	LogLevel      string
	LogFormat     string
}

// defaultDeny keeps a compromised backend from pointing the prober at the
// host's own metadata service or link-local neighbours.
var defaultDeny = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("fd00:ec2::254/128"),
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud metadata
	netip.MustParsePrefix("0.0.0.0/8"),          // "this host": connects to the prober itself
	netip.MustParsePrefix("::/128"),
}

// newFlagSet declares every flag on fs, bound to cfg.
func newFlagSet(name string, cfg *Config) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&cfg.BackendBaseURL, "backend-base-url", "", "backend base URL, e.g. https://api.example.com/neo/ (env BACKEND_BASE_URL)")
	fs.StringVar(&cfg.APIKey, "api-key", "", "backend API key; prefer API_KEY or -api-key-file, flags are visible to other users")
	fs.StringVar(&cfg.APIKeyFile, "api-key-file", "", "file holding the backend API key (env API_KEY_FILE)")
	fs.StringVar(&cfg.APIKeySSM, "api-key-ssm-parameter", "", "SSM SecureString parameter holding the API key (Lambda)")
	fs.StringVar(&cfg.APIKeySecretID, "api-key-secret-id", "", "Secrets Manager secret holding the API key (Lambda)")
	fs.StringVar(&cfg.Region, "region", "", "region whose peers to monitor (env REGION)")
	fs.StringVar(&cfg.BackendCAFile, "backend-ca-file", "", "extra CA bundle (PEM) to verify the backend")
	cfg.PeerFetchInterval, cfg.StatusReportInterval, cfg.HealthCheckInterval = 0, 30*time.Second, 200*time.Millisecond
	cfg.PeerCacheMaxAge = 24 * time.Hour
	fs.Var(seconds{&cfg.PeerFetchInterval}, "peer-fetch-interval", "reuse a cached peer list younger than this instead of fetching; 0 fetches every run (seconds or duration)")
	fs.Var(seconds{&cfg.StatusReportInterval}, "status-report-interval", "loop mode: time between the starts of two runs (seconds or duration)")
	fs.Var(seconds{&cfg.HealthCheckInterval}, "health-check-interval", "spacing of the ping samples within one probe (seconds or duration)")
	fs.Var(seconds{&cfg.PeerCacheMaxAge}, "peer-cache-max-age", "oldest cached peer list used when the backend cannot be reached")
	fs.StringVar(&cfg.DatabasePath, "database-path", "neo-uptime-node.db", "state file (env DATABASE_PATH)")
	fs.StringVar(&cfg.StateBackend, "state", "file", "state store: file or dynamodb")
	fs.StringVar(&cfg.DynamoTable, "dynamodb-table", "", "DynamoDB table for -state dynamodb")
	fs.StringVar(&cfg.DynamoEndpnt, "dynamodb-endpoint", "", "DynamoDB endpoint override (tests, local emulators)")
	cfg.LeaseTTL, cfg.Deadline, cfg.ReportReserve = 0, 25*time.Second, 5*time.Second
	cfg.ProbeTimeout, cfg.PingTimeout, cfg.RouteWait = 10*time.Second, 2*time.Second, 3500*time.Millisecond
	fs.Var(seconds{&cfg.LeaseTTL}, "lease-ttl", "run lease lifetime; default deadline + 30s")
	fs.Var(seconds{&cfg.Deadline}, "deadline", "whole-run deadline (Lambda: the invocation's, if sooner)")
	fs.Var(seconds{&cfg.ReportReserve}, "report-reserve", "part of the deadline kept for reporting and saving state")
	fs.Var(seconds{&cfg.ProbeTimeout}, "probe-timeout", "deadline of one probe")
	fs.Var(seconds{&cfg.PingTimeout}, "ping-timeout", "deadline of one ping (EasyTier uses 2s)")
	fs.Var(seconds{&cfg.RouteWait}, "route-wait", "wait this long after acceptance for the node's route info; 0 skips it")
	fs.IntVar(&cfg.Concurrency, "concurrency", 1024, "probes in flight at once")
	fs.IntVar(&cfg.ReportConns, "report-concurrency", 16, "status reports in flight at once")
	fs.IntVar(&cfg.Samples, "samples", 4, "pings per probe")
	fs.IntVar(&cfg.DownAfter, "down-after", 1, "consecutive failed runs before reporting a peer offline")
	fs.IntVar(&cfg.UpAfter, "up-after", 1, "consecutive good runs before reporting an offline peer online")
	fs.StringVar(&cfg.Output, "output", "text", "stdout: text (results table) or json (run report)")
	fs.BoolVar(&cfg.FailOnDown, "fail-on-down", false, "exit 3 when any probed peer is offline")
	fs.BoolVar(&cfg.CheckConfig, "check-config", false, "validate the configuration and exit")
	fs.Var(seconds{&cfg.Every}, "every", "repeat runs this often until SIGTERM (Docker); 0 runs once")
	fs.BoolVar(&cfg.Loop, "loop", false, "repeat runs every -status-report-interval until SIGTERM")
	fs.StringVar(&cfg.NodeCAFile, "node-ca-file", "", "verify wss nodes against this CA bundle (default: no verification, as EasyTier)")
	fs.Var(cidrList{&cfg.AllowCIDRs}, "allow-cidr", "only probe addresses in these prefixes (comma-separated, repeatable)")
	fs.Var(cidrList{&cfg.DenyCIDRs}, "deny-cidr", "never probe these prefixes, on top of link-local and cloud metadata")
	fs.StringVar(&cfg.MetricsFile, "metrics-file", "", "write Prometheus text metrics here after each run (atomically)")
	fs.StringVar(&cfg.LogLevel, "log-level", "", "debug, info, warn, error (env LOG_LEVEL, else RUST_LOG)")
	fs.StringVar(&cfg.LogFormat, "log-format", "auto", "auto (text on a terminal, else json), text or json")
	return fs
}

// compatEnv are the original's environment names, read without a prefix.
// Every other flag reads NEO_<FLAG_NAME> (e.g. NEO_DEADLINE), so generic
// names like OUTPUT or STATE in the environment are never picked up.
var compatEnv = map[string]string{
	"BACKEND_BASE_URL":       "backend-base-url",
	"API_KEY":                "api-key",
	"API_KEY_FILE":           "api-key-file",
	"REGION":                 "region",
	"PEER_FETCH_INTERVAL":    "peer-fetch-interval",
	"STATUS_REPORT_INTERVAL": "status-report-interval",
	"HEALTH_CHECK_INTERVAL":  "health-check-interval",
	"DATABASE_PATH":          "database-path",
	"LOG_LEVEL":              "log-level",
}

// parseConfig applies flags > env > config file > defaults.
func parseConfig(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	fs.String("config", "", "config file of flag-name value lines (env NEO_CONFIG)")
	// Bare env names first: ff's own flag parsing then overrides them, and
	// ff treats them as set, so neither NEO_* nor the file replaces them.
	var errs []error
	for env, name := range compatEnv {
		if v := getenv(env); v != "" {
			if err := fs.Set(name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return ff.Parse(fs, args,
		ff.WithEnvVarPrefix("NEO"),
		ff.WithConfigFileFlag("config"),
		ff.WithConfigFileParser(ff.PlainParser),
		ff.WithAllowMissingConfigFile(false),
	)
}

// resolveSecrets reads the API key from API_KEY_FILE when given.
func (c *Config) resolveSecrets() error {
	if c.APIKeyFile != "" {
		b, err := os.ReadFile(c.APIKeyFile)
		if err != nil {
			return fmt.Errorf("-api-key-file: %w", err)
		}
		c.APIKey = strings.TrimSpace(string(b))
	}
	if c.LogLevel == "" {
		c.LogLevel = rustLogLevel(os.Getenv("RUST_LOG"))
	}
	return nil
}

// rustLogLevel takes the global level of a RUST_LOG value such as
// "info,easytier=debug" or "neo_uptime_node=warn".
func rustLogLevel(v string) string {
	level := ""
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if _, lv, ok := strings.Cut(part, "="); ok {
			if level == "" {
				level = lv
			}
			continue
		}
		level = part
	}
	return strings.ToLower(level)
}

// validate reports every problem at once, naming the flag and the value.
func (c *Config) validate(needBackend bool) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if needBackend {
		if c.BackendBaseURL == "" {
			bad("-backend-base-url (BACKEND_BASE_URL) is required")
		} else if !strings.HasPrefix(c.BackendBaseURL, "http://") && !strings.HasPrefix(c.BackendBaseURL, "https://") {
			bad("-backend-base-url must start with http:// or https:// (got %q)", c.BackendBaseURL)
		}
		if c.APIKey == "" && c.APIKeySSM == "" && c.APIKeySecretID == "" {
			bad("an API key is required: API_KEY, -api-key-file, -api-key-ssm-parameter or -api-key-secret-id")
		}
	}
	if c.APIKeySSM != "" && c.APIKeySecretID != "" {
		bad("-api-key-ssm-parameter and -api-key-secret-id are exclusive")
	}
	pos := func(name string, v time.Duration) {
		if v <= 0 {
			bad("-%s must be > 0 (got %v)", name, v)
		}
	}
	nonneg := func(name string, v time.Duration) {
		if v < 0 {
			bad("-%s must be >= 0 (got %v)", name, v)
		}
	}
	pos("deadline", c.Deadline)
	pos("probe-timeout", c.ProbeTimeout)
	pos("ping-timeout", c.PingTimeout)
	pos("health-check-interval", c.HealthCheckInterval)
	pos("status-report-interval", c.StatusReportInterval)
	nonneg("peer-fetch-interval", c.PeerFetchInterval)
	nonneg("peer-cache-max-age", c.PeerCacheMaxAge)
	nonneg("report-reserve", c.ReportReserve)
	nonneg("route-wait", c.RouteWait)
	nonneg("lease-ttl", c.LeaseTTL)
	nonneg("every", c.Every)
	if c.Deadline > 0 && c.ReportReserve >= c.Deadline {
		bad("-report-reserve must be < -deadline (got %v and %v)", c.ReportReserve, c.Deadline)
	}
	if c.Samples < 1 || c.Samples > 100 {
		bad("-samples must be in 1..100 (got %d)", c.Samples)
	}
	if need := time.Duration(max(c.Samples-1, 0))*c.HealthCheckInterval + c.PingTimeout; c.Samples >= 1 && need > c.ProbeTimeout {
		bad("-samples %d spaced by -health-check-interval %v plus -ping-timeout %v need %v, more than -probe-timeout %v",
			c.Samples, c.HealthCheckInterval, c.PingTimeout, need, c.ProbeTimeout)
	}
	if c.Concurrency < 1 {
		bad("-concurrency must be >= 1 (got %d)", c.Concurrency)
	}
	if c.ReportConns < 1 {
		bad("-report-concurrency must be >= 1 (got %d)", c.ReportConns)
	}
	if c.DownAfter < 1 {
		bad("-down-after must be >= 1 (got %d)", c.DownAfter)
	}
	if c.UpAfter < 1 {
		bad("-up-after must be >= 1 (got %d)", c.UpAfter)
	}
	if c.Output != "text" && c.Output != "json" {
		bad("-output must be text or json (got %q)", c.Output)
	}
	switch c.StateBackend {
	case "file":
		if c.DatabasePath == "" {
			bad("-database-path must not be empty")
		}
	case "dynamodb":
		if c.DynamoTable == "" {
			bad("-dynamodb-table is required with -state dynamodb")
		}
	default:
		bad("-state must be file or dynamodb (got %q)", c.StateBackend)
	}
	switch c.LogLevel {
	case "", "trace", "debug", "info", "warn", "warning", "error", "off":
	default:
		bad("-log-level must be debug, info, warn or error (got %q)", c.LogLevel)
	}
	if c.LogFormat != "auto" && c.LogFormat != "text" && c.LogFormat != "json" {
		bad("-log-format must be auto, text or json (got %q)", c.LogFormat)
	}
	return errors.Join(errs...)
}

// leaseTTL is how long a run may hold the lease before others may take it.
func (c *Config) leaseTTL() time.Duration {
	if c.LeaseTTL > 0 {
		return c.LeaseTTL
	}
	return c.Deadline + 30*time.Second
}

// loopInterval is the repeat interval, or 0 for one run.
func (c *Config) loopInterval() time.Duration {
	if c.Every > 0 {
		return c.Every
	}
	if c.Loop {
		return c.StatusReportInterval
	}
	return 0
}
