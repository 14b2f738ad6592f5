#!/usr/bin/env bash
# Binary and Lambda package sizes, then cold-start timings.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -s build
make -s build-ProbeFunction ARTIFACTS_DIR="$tmp/lambda" >/dev/null
(cd "$tmp/lambda" && python3 -c 'import zipfile,sys; z=zipfile.ZipFile("../function.zip","w",zipfile.ZIP_DEFLATED); z.write("bootstrap"); z.close()')
go build -tags lambda.norpc -trimpath -ldflags "-s -w" -o "$tmp/bootstrap-host" ./cmd/neo-uptime-node
kb() { echo $(( $(stat -c %s "$1") / 1024 )); }
echo "### Sizes"
echo
echo "| artifact | KiB |"
echo "|---|---:|"
echo "| bin/neo-uptime-node (linux/amd64, stripped) | $(kb bin/neo-uptime-node) |"
echo "| Lambda bootstrap (linux/arm64, stripped) | $(kb "$tmp/lambda/bootstrap") |"
echo "| Lambda deployment zip | $(kb "$tmp/function.zip") |"
echo
go run ./bench/coldstart -bin bin/neo-uptime-node -bootstrap "$tmp/bootstrap-host" -runs "$RUNS"
