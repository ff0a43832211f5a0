// Package ha holds the high-availability tests (build tag ha): the bus under
// about 1,000 events/s while Redis fails over, behind Sentinel (kill -9 of the
// primary, SENTINEL FAILOVER) and in a Cluster with a replica per master
// (kill -9 of a master, CLUSTER FAILOVER on its replica), with and without
// the publisher's Durability option. Each test starts its own topology on
// loopback with scripts/redis-sentinel.sh or scripts/redis-cluster.sh and
// logs one row: acknowledged, handled, lost, duplicated, and the time from
// the fault to the first event handled that was published after it. The same
// run follows the bus with a gateway and two SSE browsers (reconnecting with
// Last-Event-ID), a poller of /readyz, `eventbus tail` (the real binary) and
// a pattern subscription that must find a type first published after the
// fault (probes_test.go); the row says what each of them saw.
//
//	make test-ha
//	# = go test -race -count=1 -tags ha -v ./ha/
package ha
