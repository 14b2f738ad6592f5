#!/usr/bin/env bash
# Runs every benchmark and prints Markdown tables; appends them, with the
# date, machine and commit, to bench/results/<date>.md. Usage:
#   bench/run.sh            # everything
#   BENCH_ONLY=go bench/run.sh   # just the Go micro-benchmarks
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
# RTT errors are hundredths of a millisecond apart from the node's: more runs
# to compare them with (which row comes out ahead changed between 5-run runs).
RTT_RUNS=${RTT_RUNS:-9}
# The job's wall time moves by a fifth between runs minutes apart on the
# 2-core bench machine: the scale tables take 9 runs (a few seconds each).
SCALE_RUNS=${SCALE_RUNS:-9}
only=${BENCH_ONLY:-go,scale,rtt,size,reference}
out=bench/results/$(date -u +%Y-%m-%d).md
tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.failed"' EXIT

{
  echo "## $(date -u +%Y-%m-%dT%H:%MZ) — commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB, $(go version | cut -d' ' -f3), $(uname -sr)."
  echo "Each figure: median of $RUNS runs (min–max); the scale tables $SCALE_RUNS, the RTT table $RTT_RUNS."
  echo
} | tee "$tmp"

if [[ $only == *go* ]]; then
  {
    echo "### Go benchmarks (\`go test -bench . -benchmem -count $RUNS\`: probe, wire, state, report)"
    echo
    echo '```'
    # A failing benchmark keeps its message (the indented file:line
    # lines) and fails the run at the end, after the other tables.
    go test -run '^$' -bench . -benchmem -count "$RUNS" ./probe/easytier/ ./probe/easytier/wire/ ./state/ ./report/ |
      grep -E '^(Benchmark|goos|cpu|--- FAIL| +[A-Za-z0-9_]+\.go:[0-9]+:)' || echo "go benchmarks" >>"$tmp.failed"
    echo '```'
    echo
  } | tee -a "$tmp"
fi
if [[ $only == *scale* ]]; then
  make -s build
  go run ./bench/scale -bin bin/neo-uptime-node -runs "$SCALE_RUNS" | tee -a "$tmp"
fi
if [[ $only == *rtt* ]]; then
  go run ./bench/rtt -runs "$RTT_RUNS" | tee -a "$tmp"
fi
if [[ $only == *size* ]]; then
  bench/size.sh "$RUNS" | tee -a "$tmp"
fi
if [[ $only == *reference* ]]; then
  go run ./bench/reference -runs "$RUNS" | tee -a "$tmp"
fi
cat "$tmp" >> "$out"
echo "appended to $out"
if [[ -s $tmp.failed ]]; then
  echo "FAILED: $(paste -sd, "$tmp.failed") (see above)" >&2
  exit 1
fi
