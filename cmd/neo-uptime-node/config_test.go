package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func parseFor(t *testing.T, args []string, env map[string]string) (*Config, error) {
	t.Helper()
	cfg := &Config{}
	fs := newFlagSet("test", cfg)
	fs.SetOutput(&bytes.Buffer{})
	for k, v := range env {
		t.Setenv(k, v) // ff reads NEO_* from the process environment
	}
	err := parseConfig(fs, args, func(k string) string { return env[k] })
	return cfg, err
}

func TestConfig_Precedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "neo.conf")
	if err := os.WriteFile(file, []byte("region from-file\ndeadline 11s\nsamples 7\nconcurrency 9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		get  func(*Config) any
		want any
	}{
		{"default", nil, nil, func(c *Config) any { return c.Region }, ""},
		{"file", []string{"-config", file}, nil, func(c *Config) any { return c.Region }, "from-file"},
		{"env over file", []string{"-config", file}, map[string]string{"REGION": "from-env"}, func(c *Config) any { return c.Region }, "from-env"},
		{"flag over env", []string{"-config", file, "-region", "from-flag"}, map[string]string{"REGION": "from-env"}, func(c *Config) any { return c.Region }, "from-flag"},
		{"NEO_ env over file", []string{"-config", file}, map[string]string{"NEO_DEADLINE": "13s"}, func(c *Config) any { return c.Deadline }, 13 * time.Second},
		{"file when no env", []string{"-config", file}, nil, func(c *Config) any { return c.Samples }, 7},
		{"flag over NEO_ env", []string{"-concurrency", "5"}, map[string]string{"NEO_CONCURRENCY": "6"}, func(c *Config) any { return c.Concurrency }, 5},
		{"original seconds", nil, map[string]string{"PEER_FETCH_INTERVAL": "90"}, func(c *Config) any { return c.PeerFetchInterval }, 90 * time.Second},
		{"duration form", nil, map[string]string{"HEALTH_CHECK_INTERVAL": "250ms"}, func(c *Config) any { return c.HealthCheckInterval }, 250 * time.Millisecond},
		{"database path env", nil, map[string]string{"DATABASE_PATH": "/var/lib/x.db"}, func(c *Config) any { return c.DatabasePath }, "/var/lib/x.db"},
		{"bare generic env ignored", nil, map[string]string{"OUTPUT": "json"}, func(c *Config) any { return c.Output }, "text"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFor(t, tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.get(cfg); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestConfig_RustLog(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"info", "info"}, {"warn,easytier=debug", "warn"}, {"neo_uptime_node=debug", "debug"}, {"", ""}, {"DEBUG", "debug"},
	} {
		if got := rustLogLevel(tc.in); got != tc.want {
			t.Errorf("rustLogLevel(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	cfg, _ := parseFor(t, nil, nil)
	t.Setenv("RUST_LOG", "warn,foo=debug")
	if err := cfg.resolveSecrets(); err != nil || cfg.LogLevel != "warn" {
		t.Errorf("LogLevel from RUST_LOG = %q, %v; want warn", cfg.LogLevel, err)
	}
}

func TestConfig_ValidateReportsEveryProblem(t *testing.T) {
	cfg, err := parseFor(t, []string{"-concurrency", "0", "-samples", "0", "-output", "yaml", "-state", "s3",
		"-deadline", "2s", "-report-reserve", "3s", "-down-after", "0"}, map[string]string{"BACKEND_BASE_URL": "ftp://x"})
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.validate(true).Error()
	want := strings.Join([]string{
		`-backend-base-url must start with http:// or https:// (got "ftp://x")`,
		`an API key is required: API_KEY, -api-key-file, -api-key-ssm-parameter or -api-key-secret-id`,
		`-report-reserve must be < -deadline (got 3s and 2s)`,
		`-samples must be in 1..100 (got 0)`,
		`-concurrency must be >= 1 (got 0)`,
		`-down-after must be >= 1 (got 0)`,
		`-output must be text or json (got "yaml")`,
		`-state must be file or dynamodb (got "s3")`,
	}, "\n")
	if got != want {
		t.Errorf("validate() =\n%s\nwant\n%s", got, want)
	}
}

func TestConfig_SamplesMustFitProbeTimeout(t *testing.T) {
	cfg, _ := parseFor(t, nil, map[string]string{"BACKEND_BASE_URL": "https://x", "API_KEY": "k", "HEALTH_CHECK_INTERVAL": "5"})
	want := "-samples 4 spaced by -health-check-interval 5s plus -ping-timeout 2s need 17s, more than -probe-timeout 10s"
	if err := cfg.validate(true); err == nil || err.Error() != want {
		t.Errorf("validate() = %v, want %q", err, want)
	}
}

func TestRun_CheckConfigAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	env := map[string]string{"BACKEND_BASE_URL": "https://backend.example/neo", "API_KEY": "k"}
	getenv := func(k string) string { return env[k] }
	if code := run(context.Background(), []string{"-check-config"}, &out, &errb, getenv); code != exitOK || !strings.Contains(out.String(), "configuration ok") {
		t.Errorf("-check-config = %d, %q", code, out.String())
	}
	errb.Reset()
	if code := run(context.Background(), []string{"-samples", "0"}, &out, &errb, getenv); code != exitUsage || !strings.Contains(errb.String(), "-samples must be in 1..100 (got 0)") {
		t.Errorf("bad flag = %d, %q", code, errb.String())
	}
	if code := run(context.Background(), []string{"frobnicate"}, &out, &errb, getenv); code != exitUsage {
		t.Errorf("unknown command exit = %d, want 2", code)
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte("from-file\n"), 0o600)
	cfg, _ := parseFor(t, []string{"-api-key-file", keyFile}, nil)
	if err := cfg.resolveSecrets(); err != nil || cfg.APIKey != "from-file" {
		t.Errorf("API key from file = %q, %v", cfg.APIKey, err)
	}
}
