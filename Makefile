# Moat: run `make help` for the targets.
SHELL := /bin/bash
GO ?= go
PKGS := ./...
FUZZTIME ?= 20s
TEST_TIMEOUT ?= 15m

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-12s %s\n",$$1,$$2}'

.PHONY: deps
deps: ## install what Moat needs on this machine (ClickHouse server, Go modules, chDB for the portability tests)
	@scripts/install-clickhouse.sh
	@$(GO) mod download
	@scripts/fetch-chdb.sh >/dev/null

.PHONY: build
build: ## build bin/moat
	$(GO) build -o bin/moat ./cmd/moat

DATA_CACHE ?= $(or $(MOAT_DATA_CACHE),$(HOME)/.cache/moat)

.PHONY: data
data: ## fetch the offline enrichment data (GeoIP, ASN, crawler and disposable-email lists) into DATA_CACHE
	@scripts/fetch-data.sh "$(DATA_CACHE)" >/dev/null || echo "warning: enrichment data not fetched; moat runs without geolocation" >&2

.PHONY: chdb
chdb: ## run the ClickHouse portability check: migrations and analyst queries on a current engine (chDB)
	MOAT_CHDB_LIB="$$(scripts/fetch-chdb.sh)" $(GO) test -count=1 ./internal/chdb/

.PHONY: run
run: deps build data ## run every role in one process (embedded Kafka, local ClickHouse) on 127.0.0.1:8080
	@set -a; [ -f "$(DATA_CACHE)/paths.env" ] && . "$(DATA_CACHE)/paths.env"; set +a; exec bin/moat dev

.PHONY: fmt-check
fmt-check: ## fail if gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## go vet
	$(GO) vet $(PKGS)

.PHONY: test
test: deps fmt-check vet ## run the whole test suite, integration tests included (real kfake and ClickHouse)
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

.PHONY: test-race
test-race: deps ## the test suite under the race detector
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

.PHONY: fuzz
fuzz: ## fuzz the request decoder, its JSON validator and the log's record decoders, FUZZTIME each
	GO=$(GO) scripts/fuzz.sh FuzzDecode ./ingest/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz.sh FuzzCheckJSON ./ingest/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz.sh FuzzDecodeObservation ./schemas/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz.sh FuzzDecodeEvent ./schemas/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz.sh FuzzDecodeDecision ./schemas/ $(FUZZTIME)

.PHONY: bench
bench: deps build ## Go benchmarks, then the load harness against a dev stack
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 $(PKGS)
	scripts/bench.sh

.PHONY: chaos
chaos: deps ## fault injection with every role as its own process: 100,000 events, SIGKILLs, broker restart, 60 s ClickHouse outage
	MOAT_CHAOS_EVENTS=100000 MOAT_CHAOS_CLICKHOUSE_DOWN_SECONDS=60 $(GO) test -count=1 -timeout 30m -v -run TestChaos ./internal/chaos/

SIMULATE_FLAGS ?=

.PHONY: simulate
simulate: build data ## the quality harness: labelled legitimate and attack logins through the scorer and a baseline; writes docs/risk-quality.md
	@set -a; [ -f "$(DATA_CACHE)/paths.env" ] && . "$(DATA_CACHE)/paths.env"; set +a; \
	bin/moat simulate --out docs/risk-quality.md $(SIMULATE_FLAGS) >/dev/null

.PHONY: up
up: ## start the production-like stack of compose.yaml (needs Docker)
	docker compose up -d --build

.PHONY: down
down: ## stop the compose.yaml stack
	docker compose down

.PHONY: clean
clean: ## remove build output and the dev data dir
	rm -rf bin .moat
