# xrc developer entry points. `make help` lists them. Logic lives in Go and in
# deploy/local/stack; these targets only wire things together.
SHELL       := bash
.SHELLFLAGS := -euo pipefail -c
GO          ?= go
CACHE       ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/xrc
STACK       := deploy/local/stack
VERSION     ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X github.com/xrc-dev/xrc/internal/app.Version=$(VERSION)
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(CACHE)/bin/staticcheck-$(STATICCHECK_VERSION)/staticcheck
BINARIES    := xrc xrc-source xrc-target
FUZZTIME    ?= 30s
BENCH_GIB   ?= 6
# libzstd (compiled by cgo from github.com/DataDog/zstd) is ~20% faster at
# -O3, the level zstd's own build uses, than at cgo's default -O2.
CGO_CFLAGS  ?= -O3 -g
export CGO_CFLAGS
# The version comes from -ldflags; stamping VCS details into the binaries
# the tests build (chaos, demo, the Lambda emulator) would need git to
# trust the checkout, which it refuses to a user other than its owner.
export GOFLAGS := $(strip $(shell $(GO) env GOFLAGS) -buildvcs=false)

.DEFAULT_GOAL := help
.PHONY: help build test race unit lint demo chaos bench bench-adaptive bench-e2e fuzz synth cdk-test stack-up stack-down stack-status stack-wipe clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  \033[1m%-13s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build the binaries into bin/ (libzstd through cgo when a C compiler is there, else pure Go)
	@mkdir -p bin
	@for b in $(BINARIES); do $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/$$b ./cmd/$$b; done
	@echo "built: $(addprefix bin/,$(BINARIES))"

test: lint stack-up ## Lint, then every test: the workers against the local stack (brought up; the first run builds it), then the CDK app
	stackenv="$$($(STACK) env)" && eval "$$stackenv" && $(GO) test -count=1 -timeout 15m ./...
	CGO_ENABLED=0 $(GO) test -count=1 ./internal/archive/ ./internal/libzstd/ # the pure-Go build
	$(GO) test -count=1 -tags noasm ./internal/checksum/ # CRC64NVME without SIMD, as on Graviton2
	stackenv="$$($(STACK) env)" && eval "$$stackenv" && $(GO) test -race -count=1 -timeout 10m $(RACE_PACKAGES) # the most concurrent code, under the race detector
	$(MAKE) --no-print-directory cdk-test

# Where concurrency is the point (about 70 s under -race); make race runs all.
RACE_PACKAGES = ./internal/worker/ ./internal/queue/ ./internal/backfill/ ./internal/uploads/ ./internal/metrics/ ./internal/config/

race: stack-up ## Every test under the race detector (about twice as long as make test's)
	stackenv="$$($(STACK) env)" && eval "$$stackenv" && $(GO) test -race -count=1 -timeout 40m ./...

unit: ## Only the tests that need no local stack (quick)
	$(GO) test -count=1 ./internal/config/ ./internal/events/ ./internal/manifest/ ./internal/archive/ ./internal/libzstd/ ./internal/metrics/ ./internal/health/ ./internal/adaptive/ ./internal/cpuclock/

lint: $(STATICCHECK) ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	CGO_ENABLED=0 $(GO) vet ./internal/archive/ ./internal/libzstd/ && CGO_ENABLED=0 $(STATICCHECK) ./internal/archive/ ./internal/libzstd/
	cd deploy/cdk && $(GO) vet ./... && $(STATICCHECK) ./...

$(STATICCHECK):
	@echo "installing staticcheck $(STATICCHECK_VERSION) into $(dir $@)"
	@for try in 1 2 3; do GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) && exit 0; \
		echo "go install staticcheck failed (try $$try of 3)"; sleep $$((try * 15)); done; exit 1

demo: stack-up ## Run the whole pipeline locally and print a report (LAMBDA=1: both roles as cmd/xrc-lambda in the Lambda runtime interface emulator)
	stackenv="$$($(STACK) env)" && eval "$$stackenv" && $(GO) run ./deploy/local/demo -config configs/local.json $(if $(LAMBDA),-lambda)

chaos: stack-up ## The pipeline under fire: 2 source + 2 target workers, 2,000 objects, 10 SIGKILLs, poison; one line per check (make test runs a small one)
	stackenv="$$($(STACK) env)" && eval "$$stackenv" && $(GO) run ./deploy/local/chaos

bench: stack-up ## Codec benchmarks, then both workers on the local stack: source CPU vs zstd -3 -T1, peak RSS moving one object of BENCH_GIB GiB (default 6), generated on the fly (~30 min)
	bash internal/archive/bench.sh
	stackenv="$$($(STACK) env)" && eval "$$stackenv" && XRC_BENCH_GIB=$(BENCH_GIB) $(GO) test -run '^$$' -benchtime 1x -timeout 90m \
		-bench '^(BenchmarkSourceCPU|BenchmarkSourceLargeObject|BenchmarkExtract|BenchmarkPipelineLarge)$$' ./internal/source/ ./internal/deliver/

bench-adaptive: ## The adaptive learner against every fixed level and Store on each generated class, and from cold starts on mixed sizes (~4 min)
	$(GO) test -run '^$$' -bench '^(BenchmarkAdaptive|BenchmarkLearnerMixedSizes)$$' -benchtime 1x -timeout 30m ./internal/adaptive/

bench-e2e: stack-up ## xrc end to end vs rclone over a shaped 100 Mbit/s link in a network namespace (root; ~5 min; SIZE=64MiB for a 1-min run)
	stackenv="$$($(STACK) env)" && eval "$$stackenv" && $(GO) run ./deploy/local/benche2e

# Minimizing an interesting input may take the fuzzer's whole default
# minute: FuzzReaderTar ran 6 inputs in 20 s that way, 5,000 with 2 s.
FUZZMINIMIZE ?= 2s
# Go 1.26's fuzzing coordinator may fail a target with a bare "context
# deadline exceeded" as -fuzztime ends, finding nothing (golang/go#75804,
# fixed in Go 1.27): such a run, with no failing input written, is run
# once more; any other failure, or that one twice, fails.
fuzz: ## Run every fuzz target (found in the sources) for FUZZTIME each (default 30s)
	@out=$$(mktemp); trap 'rm -f "$$out"' EXIT; \
	grep -rl --include='*_test.go' '^func Fuzz' internal deploy | sort | while read -r f; do \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$f"); do \
			for try in 1 2; do \
				echo "fuzz $$t in ./$$(dirname "$$f")"; \
				if $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) "./$$(dirname "$$f")" 2>&1 | tee "$$out"; [ "$${PIPESTATUS[0]}" = 0 ]; then break; fi; \
				if [ $$try = 1 ] && grep -q 'context deadline exceeded' "$$out" && ! grep -q 'Failing input written' "$$out"; then \
					echo "fuzz $$t: the fuzzing engine's deadline flake (golang/go#75804), nothing found: once more"; continue; \
				fi; \
				exit 1; \
			done; \
		done; \
	done

# Templates to read: the function may be built in pure Go where neither a
# C cross compiler nor Docker is here (a deployment must ask for that).
synth: ## Synthesize the CDK stacks for configs/example.json offline (cdk-nag included; no AWS credentials)
	deploy/cdk/cdk synth --quiet -c config=configs/example.json -c version=$(VERSION) -c lambdaPureGo=true -o $(CACHE)/cdk.out/example
	@echo "templates in $(CACHE)/cdk.out/example"

cdk-test: ## CDK app tests with awscdk/assertions (need Node.js, which jsii runs on)
	@command -v node >/dev/null || { echo "cdk-test needs Node.js >= 20 (apt-get install nodejs)"; exit 1; }
	cd deploy/cdk && $(GO) test -count=1 -timeout 20m ./...

stack-up: ## Start the local AWS-protocol stack on 127.0.0.1 (installs what is missing)
	$(STACK) up

stack-down: ## Stop the local stack
	$(STACK) down

stack-status: ## Show the local stack's services
	$(STACK) status

stack-wipe: ## Stop the local stack and delete its S3 data (demo runs and failed tests keep theirs)
	$(STACK) wipe

clean: ## Remove build output
	rm -rf bin
