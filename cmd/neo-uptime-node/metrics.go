package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/neouptime/neo-uptime-node/probe"
)

// writeMetrics publishes the run's metrics without extra API calls: in
// Lambda as a CloudWatch Embedded Metric Format line on stdout, elsewhere
// as a Prometheus text file written atomically when -metrics-file is set.
func writeMetrics(cfg *Config, r *RunReport, runErr error, log *slog.Logger) {
	if r == nil || r.Skipped {
		return
	}
	if os.Getenv("AWS_LAMBDA_RUNTIME_API") != "" {
		fmt.Fprintln(os.Stdout, string(emfLine(r, runErr)))
	}
	if cfg.MetricsFile != "" {
		if err := writePromFile(cfg.MetricsFile, r, runErr); err != nil {
			log.Warn("writing metrics file", keyErr, err)
		}
	}
}

// emfLine renders one Embedded Metric Format document.
func emfLine(r *RunReport, runErr error) []byte {
	counts := r.Counts()
	p50, p95 := r.RTTPercentiles()
	doc := map[string]any{}
	var metrics []map[string]string
	add := func(name string, v any, unit string) {
		doc[name] = v
		metrics = append(metrics, map[string]string{"Name": name, "Unit": unit})
	}
	for _, c := range probe.Classes {
		add("peers_"+string(c), counts[string(c)], "Count")
	}
	add("rtt_p50_ms", p50, "Milliseconds")
	add("rtt_p95_ms", p95, "Milliseconds")
	add("run_duration_ms", ms(r.FinishedAt.Sub(r.StartedAt)), "Milliseconds")
	add("reports_delivered", r.Reported, "Count")
	add("reports_undelivered", r.Undelivered, "Count")
	failed := 0
	if runErr != nil {
		failed = 1
	}
	add("run_failed", failed, "Count")
	doc["_aws"] = map[string]any{
		"Timestamp": time.Now().UnixMilli(),
		"CloudWatchMetrics": []map[string]any{{
			"Namespace":  "NeoUptimeNode",
			"Dimensions": [][]string{{}},
			"Metrics":    metrics,
		}},
	}
	b, _ := json.Marshal(doc)
	return b
}

// writePromFile writes Prometheus text format via a temp file and rename.
func writePromFile(path string, r *RunReport, runErr error) error {
	var b bytes.Buffer
	counts := r.Counts()
	p50, p95 := r.RTTPercentiles()
	fmt.Fprintln(&b, "# HELP neo_uptime_peers Peers by outcome class in the last run.")
	fmt.Fprintln(&b, "# TYPE neo_uptime_peers gauge")
	for _, c := range probe.Classes {
		fmt.Fprintf(&b, "neo_uptime_peers{class=%q} %d\n", c, counts[string(c)])
	}
	gauge := func(name, help string, v float64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", name, help, name, name, v)
	}
	gauge("neo_uptime_rtt_p50_ms", "Median RTT of online peers.", p50)
	gauge("neo_uptime_rtt_p95_ms", "95th percentile RTT of online peers.", p95)
	gauge("neo_uptime_run_duration_seconds", "Duration of the last run.", r.FinishedAt.Sub(r.StartedAt).Seconds())
	gauge("neo_uptime_reports_undelivered", "Reports kept for the next run.", float64(r.Undelivered))
	gauge("neo_uptime_last_run_timestamp_seconds", "End of the last run.", float64(r.FinishedAt.Unix()))
	failed := 0.0
	if runErr != nil {
		failed = 1
	}
	gauge("neo_uptime_last_run_failed", "1 if the last run failed.", failed)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".metrics-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
