// Package bench compares the bus with plain go-redis and plain
// watermill-redisstream on one Redis, in one process and one run.
//
// Run runs every scenario in rounds and returns a Report with each variant's
// throughput, CPU per event, latencies and connections, and the ratios
// against their targets; Report.WriteTable prints it and it marshals to JSON.
// `eventbus bench` and `make bench` call Run. The scenarios are built with
// NewPublisher, NewEndToEnd, NewPattern, NewRoundTripper and NewIdleStreams;
// the go test benchmarks in bench_test.go (`make bench-go`, for benchstat)
// are thin wrappers over the same constructors. docs/benchmarks.md has the
// results and what they mean.
//
// Everything needs a single Redis: connection counts use CLIENT LIST and the
// idle scenario INFO commandstats, which a Redis Cluster answers per node
// (ErrCluster). Run writes only under its own prefix and deletes it at the
// end; it still loads the Redis it is pointed at, so never point it at a
// production Redis.
//
// Concurrency: Run and each scenario value are used from one goroutine;
// separate runs may go on concurrently under separate prefixes.
package bench

import (
	"slices"
	"strings"
	"time"
)

// Percentile returns the p-quantile (0 < p ≤ 1) of ds by the nearest-rank
// method: the smallest value such that at least p of the samples are at or
// below it. It sorts ds in place and returns 0 for no samples.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := int(float64(len(ds))*p+0.999999999) - 1 // ceil(p*n) - 1
	return ds[min(max(rank, 0), len(ds)-1)]
}

// CountClients returns how many connections in clientList, the reply of
// CLIENT LIST (one connection per line, space-separated key=value fields),
// carry the client name.
func CountClients(clientList, name string) int {
	n := 0
	for line := range strings.SplitSeq(clientList, "\n") {
		for field := range strings.FieldsSeq(line) {
			if v, ok := strings.CutPrefix(field, "name="); ok {
				if v == name {
					n++
				}
				break
			}
		}
	}
	return n
}
