# Fossil. Run `make help` for the targets.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/fossil-events/fossil/cmd.version=$(VERSION)
# The maintenance database of the server that holds the scratch bench databases.
PG_ADMIN_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.DEFAULT_GOAL := help
.PHONY: help build test lint fuzz chaos chaos-subscriptions bench bench-go bench-scale bench-ab bench-tracing bench-tree db/reset db/reset-scale

help: ## List the targets.
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z0-9_\/-]+:.*## / { printf "  %-10s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## Build bin/fossil with the version from git.
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/fossil .

test: ## Install what the tests need if missing, then run them with -race (.ci/test, as CI).
	bash .ci/test

lint: ## golangci-lint if installed, else go vet and a gofmt check.
	@if command -v golangci-lint >/dev/null 2>&1; then \
		golangci-lint run ./...; \
	else \
		echo "golangci-lint not installed: go vet + gofmt"; \
		$(GO) vet ./... && \
		out=$$(gofmt -l $$(git ls-files '*.go')) && \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi; \
	fi

chaos: ## The reliability suite: kill -9, PostgreSQL restarts, full disk, greedy and hostile clients (about 10 min; docs/RELIABILITY.md).
	@echo "make chaos: about 10 minutes; full output in chaos.out"
	@$(GO) test -tags chaos -count=1 -v -timeout 30m ./chaos/ > chaos.out 2>&1; rc=$$?; \
		grep -E '^(=== RUN|--- |FIGURE|PASS|FAIL|ok|\*\*\*)|_test.go:[0-9]+:' chaos.out; exit $$rc

fuzz: ## Every fuzz target for FUZZTIME each (default 60s; .ci/fuzz).
	bash .ci/fuzz

chaos-subscriptions: ## Crash tests of subscription delivery alone (also in make test): SIGKILL the delivering process, killed connections (~1 min).
	$(GO) test -race -count=1 -run 'Chaos|Takeover|KilledConnections' -v -timeout 10m ./subscription/

bench: build ## Fossil vs raw PostgreSQL on this machine (bench/run.sh, a few minutes).
	bench/run.sh

bench-scale: ## Costs at a large log (SCALE_EVENTS, default 10M) beside 10k events (bench/scale.sh; long).
	bench/scale.sh

bench-ab: ## The append shapes against two revisions, alternating in one run: make bench-ab A=f0894b8^ B=HEAD (bench/ab.sh).
	bench/ab.sh "$(A)" "$(B)"

bench-tracing: ## The append shapes with tracing off and on (every span exported to a local sink), alternating in one run (AB_TRACING=1 bench/ab.sh HEAD HEAD).
	AB_TRACING=1 bench/ab.sh HEAD HEAD

bench-tree: ## What the Merkle tree costs the append shapes: HEAD built without the tree work (tag benchnotree) against HEAD, alternating (bench/ab.sh).
	AB_TAGS_A=benchnotree bench/ab.sh HEAD HEAD

bench-go: ## Go micro-benchmarks, short (go test -bench).
	$(GO) test -run=NONE -bench=. -benchtime=200ms -timeout 10m ./...

db/reset: ## Drop the scratch bench databases (fossil_bench, fossil_bench_raw, fossil_bench_raw_sql).
	@if psql -X -q -c "SELECT 1" "$(PG_ADMIN_URL)" >/dev/null 2>&1; then \
		for db in fossil_bench fossil_bench_raw fossil_bench_raw_sql; do \
			PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $$db WITH (FORCE)" "$(PG_ADMIN_URL)" || exit 1; \
			echo "dropped $$db (if it existed)"; \
		done; \
	else \
		echo "no PostgreSQL at $(PG_ADMIN_URL): nothing to drop (a throwaway bench cluster is removed when bench/run.sh exits)"; \
	fi

db/reset-scale: ## Drop the scratch databases of make bench-scale (fossil_scale_*).
	@for db in $$(psql -X -At -c "SELECT datname FROM pg_database WHERE datname LIKE 'fossil\_scale\_%'" "$(PG_ADMIN_URL)"); do \
		PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $$db WITH (FORCE)" "$(PG_ADMIN_URL)" || exit 1; \
		echo "dropped $$db"; \
	done

# proto regenerates the Go code beside proto/fossil/v1/*.proto. Needs protoc
# (apt-get install protobuf-compiler); the plugins are built at the versions
# go.mod pins. TestGeneratedCodeIsCurrent fails when the committed code is stale.
.PHONY: proto
proto:
	bash proto/generate.sh
