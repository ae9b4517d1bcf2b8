# orgperm: make help lists the targets.
GO ?= go
STATICCHECK_VERSION ?= v0.8.2
BENCHTIME ?= 1s
SOAK_DURATION ?= 10m

.PHONY: help test bench bench-go lint demo serve generate fuzz soak cover

help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

test: ## Run every test with the race detector against a real PostgreSQL (throwaway cluster, or DATABASE_URL).
	$(GO) test -race -count=1 ./...

bench: ## The seed's comparison (no cache, Redis, request cache, orgperm) into docs/BENCHMARKS.md; needs redis-server.
	cd bench && $(GO) run . -out ../docs/BENCHMARKS.md

bench-go: ## Every Go benchmark of the library (one run; ratios are reported by the benchmarks themselves).
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -cpu 1,2 ./...

lint: ## gofmt, go vet and staticcheck.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

demo: ## Run the walk-through: a throwaway Postgres, two instances, a raw SQL revoke, the eviction.
	$(GO) run ./cmd/demo

serve: ## Run the demo HTTP API (middleware, /metrics, /healthz).
	$(GO) run ./cmd/demo serve

generate: ## Write sql/triggers.sql as the newest triggers migration (rewritten while unreleased, else the next number).
	sh scripts/gen-triggers-migration.sh

soak: ## Consistency soak (SOAK_DURATION, default 10m): raw SQL writers, listener faults; exits 1 on any stale read.
	$(GO) run ./cmd/soak -duration $(SOAK_DURATION)

fuzz: ## Fuzz the NOTIFY payload parser for a minute.
	$(GO) test -run '^$$' -fuzz FuzzParsePayload -fuzztime 60s ./pkg/listener/

cover: ## Test coverage summary.
	$(GO) test -count=1 -coverprofile=cover.out ./... && $(GO) tool cover -func=cover.out | tail -1
