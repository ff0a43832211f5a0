# eventbus — every target works on a fresh machine: tests start their own
# Redis and PostgreSQL when none answers (scripts/with-redis.sh,
# scripts/with-postgres.sh).
GO           ?= go
STATICCHECK  ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCHSTAT    ?= $(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
TESTFLAGS    ?= -race -count=1 -timeout 20m
BENCHTIME    ?= 2s

.PHONY: all demo test test-ts ts-build test-cluster test-faults test-tls test-ha bench bench-go bench-gateway bench-peers lint fuzz tidy

all: lint test

## demo: run the photo pipeline end to end (embedded Redis unless REDIS_URL is set)
demo:
	$(GO) run ./cmd/eventbus demo

## test: every test, with the race detector, against a real Redis and PostgreSQL
test: ts-build
	scripts/with-redis.sh scripts/with-postgres.sh $(GO) test $(TESTFLAGS) ./...
	$(MAKE) test-ts

## ts-build: install (npm ci, when node_modules is missing or older than the lockfile) and build the TypeScript client
ts-build:
	cd clients/typescript && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } && npm run build

## test-ts: the TypeScript client's own tests (node --test) against a real Redis
test-ts: ts-build
	scripts/with-redis.sh sh -c 'cd clients/typescript && node --test test/*.test.mjs'

## test-cluster: the core, wildcard and fault tests against a 3-master Redis Cluster
test-cluster:
	scripts/with-redis.sh scripts/with-redis-cluster.sh $(GO) test $(TESTFLAGS) -tags cluster ./bus/ ./internal/redistest/

## test-faults: the fault-injection suite (crash, restart, cut, poison, slow handler)
test-faults:
	scripts/with-redis.sh $(GO) test $(TESTFLAGS) -tags faults ./faults/

## test-tls: the bus, a worker and the gateway over rediss:// as the least-privilege ACL user of deploy/redis-acl.conf, against a TLS Redis started on loopback
test-tls:
	@dir=$$(mktemp -d); trap 'scripts/redis-tls.sh stop "$$dir"' EXIT; \
	  scripts/redis-tls.sh start "$$dir" && set -a && . "$$dir/env" && set +a && \
	  $(GO) test $(TESTFLAGS) -tags tls -run TLS ./bus/

## test-ha: failover under load (Sentinel: kill -9 / SENTINEL FAILOVER; Cluster with replicas: kill -9 / CLUSTER FAILOVER), with and without Durability; each test starts its own topology on loopback
test-ha:
	$(GO) test $(TESTFLAGS) -tags ha -v ./ha/

## bench: the bus beside plain go-redis and plain watermill-redisstream in one run, with the ratio table (eventbus bench)
BENCHFLAGS   ?= --events 20000 --latency-samples 2000 --rounds 5 --idle-streams 10000
bench:
	scripts/with-redis.sh $(GO) run ./cmd/eventbus bench $(BENCHFLAGS)

## bench-go: the same scenarios as go test benchmarks, for benchstat (make bench-go > old.txt)
bench-go:
	scripts/with-redis.sh $(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count 1 ./internal/bench/

## bench-gateway: the SSE load run (gateway in a process of its own; 1,000 clients, 1,000 events/s for 10 s) — a measurement, not a test
bench-gateway:
	scripts/with-redis.sh $(GO) run ./bench/gatewayload

## bench-peers: the bus beside go-redis, redisstream, NATS JetStream (127.0.0.1:4222) and RabbitMQ (127.0.0.1:5672) in one run (bench/peers, a module of its own)
PEERSFLAGS   ?= --events 20000 --latency-events 2000 --rounds 3
bench-peers:
	scripts/with-redis.sh sh -c 'cd bench/peers && $(GO) run . $(PEERSFLAGS)'

## fuzz: each fuzz target for a bounded time
FUZZTIME ?= 20s
fuzz:
	@for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' bus/*_test.go | sed 's/^func //'); do \
	  echo "fuzz bus $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./bus/ || exit 1; done
	@for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' gateway/*_test.go 2>/dev/null | sed 's/^func //'); do \
	  echo "fuzz gateway $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./gateway/ || exit 1; done

## lint: gofmt, go vet, staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

tidy:
	$(GO) mod tidy
