# neo-uptime-node — build, test and deploy helpers. `make help` lists targets.

SHELL        := /bin/bash
GO           ?= go
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS      := -s -w -X main.version=$(VERSION)
# aws-lambda-go's RPC mode served the retired go1.x runtime only; without it
# the binary drops net/rpc, encoding/gob and html/template (~1 ms of package
# init per run, ~6 MB unstripped).
TAGS         := lambda.norpc
VENV         ?= .venv
PY           := $(VENV)/bin/python
DYNALITE     := .cache/dynalite/node_modules/dynalite/cli.js
FUZZTIME     ?= 10s
BENCHTIME    ?= 1s
# Python packages for tests and template checks, pinned.
PY_PKGS      := easytier-pyo3==0.1.3 cryptography cfn-lint==1.58.0 aws-sam-cli==1.170.0 kubernetes-validate==1.37.0 'moto[server]==5.2.5'
RIE_VERSION  := v0.0.0-20261030222936-bef5c4ba774d
RIE          := .cache/bin/aws-lambda-rie

export NEO_EASYTIER_PYTHON := $(abspath $(PY))

.PHONY: help deps container-deps build test test-short fuzz fuzz-smoke bench lint check ci demo clean validate-templates lambda-test build-ProbeFunction

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

# The venv is (re)filled whenever PY_PKGS changes: the stamp names its hash.
PKGS_HASH    := $(shell echo '$(PY_PKGS)' | md5sum | cut -c1-12)
PY_STAMP     := $(VENV)/.pkgs-$(PKGS_HASH)

$(PY_STAMP):
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet $(PY_PKGS)
	touch $@

$(DYNALITE):
	npm install --silent --no-audit --no-fund --prefix .cache/dynalite dynalite@4.0.0

$(RIE):
	GOBIN=$(abspath .cache/bin) $(GO) install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$(RIE_VERSION)

deps: $(PY_STAMP) $(DYNALITE) $(RIE) ## install test dependencies (Python venv, dynalite, Lambda emulator)
	$(GO) mod download

# podman builds and runs the Dockerfile in TestDocker_* (this machine kind
# has no Docker engine); busybox-static is the stand-in builder's shell.
container-deps: ## install podman and busybox-static from Debian's packages (needs root; CI)
	command -v podman >/dev/null && command -v busybox >/dev/null || \
	  apt-get install -y -q podman busybox-static >/dev/null || \
	  { apt-get update -q >/dev/null && apt-get install -y -q podman busybox-static >/dev/null; }

build: ## build bin/neo-uptime-node
	CGO_ENABLED=0 $(GO) build -tags $(TAGS) -trimpath -ldflags "$(LDFLAGS)" -o bin/neo-uptime-node ./cmd/neo-uptime-node

demo: build ## run one invocation against the embedded demo backend and nodes
	./bin/neo-uptime-node demo

# The stack-size test runs again without the race detector, whose larger
# frames would change what it measures (it skips itself under -race).
test: deps ## run every test: unit, real EasyTier node, DynamoDB emulator, Lambda emulator
	$(GO) test -race -count=1 -timeout 15m ./...
	$(GO) test -count=1 -run '^TestRunner_ProbeStackStaysSmall$$' ./probe/

test-short: ## unit tests only (no real node, no emulators needed)
	$(GO) test -short -race -count=1 ./...

fuzz: ## fuzz every target for FUZZTIME each (e.g. make fuzz FUZZTIME=2h)
	@for pkg_target in $$(./bench/fuzz-targets.sh); do \
	  pkg=$${pkg_target%%:*}; target=$${pkg_target##*:}; \
	  echo "fuzz $$pkg $$target"; \
	  $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

fuzz-smoke: ## fuzz every target briefly (CI; a count, not a duration: short -fuzztime durations can end in a spurious "context deadline exceeded")
	$(MAKE) fuzz FUZZTIME=100000x

bench: build ## run the benchmarks and print/append tables under bench/results
	./bench/run.sh

lint: ## gofmt, go vet, and the shipped packages built (and their tests vetted) for macOS, FreeBSD and Windows
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...
	@for t in darwin/arm64 freebsd/amd64 windows/amd64; do \
		echo "go build and go vet (tests too) for $$t"; \
		GOOS=$${t%/*} GOARCH=$${t#*/} CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/... ./probe/... ./report/... ./state/... || exit 1; \
		GOOS=$${t%/*} GOARCH=$${t#*/} CGO_ENABLED=0 $(GO) vet ./cmd/... ./probe/... ./report/... ./state/... || exit 1; \
	done

validate-templates: $(PY_STAMP) ## cfn-lint, sam validate --lint, sam build (arm64), kubernetes-validate
	$(VENV)/bin/cfn-lint template.yaml
	AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam validate --lint --template template.yaml
	AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam build --build-in-source --template template.yaml --build-dir .aws-sam/build
	@file .aws-sam/build/ProbeFunction/bootstrap | tee /dev/stderr | grep -q 'ARM aarch64'
	$(VENV)/bin/kubernetes-validate --strict deploy/kubernetes/*.yaml

check: lint validate-templates test fuzz-smoke ## everything CI runs

ci: check ## alias used by .ci/run

# SAM's makefile builder calls this with ARTIFACTS_DIR set; it passes
# neither GOOS/GOARCH nor CGO_ENABLED, so they are set here.
build-ProbeFunction:
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -tags $(TAGS) -trimpath -ldflags "$(LDFLAGS)" -o $(ARTIFACTS_DIR)/bootstrap ./cmd/neo-uptime-node

clean: ## remove build outputs (keeps the venv and caches)
	rm -rf bin .aws-sam bench/out
