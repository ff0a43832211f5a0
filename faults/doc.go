//go:build faults

// Package faults is the fault-injection suite of the event bus: it proves
// at-least-once delivery of bus.Subscriber while things break. It holds only
// tests, built with the "faults" tag:
//
//	make test-faults
//	# = scripts/with-redis.sh go test -race -count=1 -tags faults ./faults/
//
// The faults: a consumer process killed with SIGKILL mid-batch (crash; the
// SIGKILL tests start their child processes with one harness, startChild in
// child_test.go: a router worker killed between handle and ack with and
// without router.WithDedup, the photo pipeline's worker, the delay mover), the
// Redis server shut down and restarted under load (restart, on a redis-server
// of its own with an append-only file), every connection cut and stalled
// through internal/faultproxy (cut), hand-written garbage entries (poison), and
// a handler slower than ClaimMinIdle next to an aggressive second consumer
// (slow). Every test runs on loopback only and is bounded in time.
//
// Each test adds a row (fault, published, acked to the publisher, handled,
// lost, duplicated, recovery time) to a results table that is logged and, when
// FAULTS_REPORT names a file, written there as markdown for
// docs/reliability.md.
package faults
