// Package bench compares the bus with plain go-redis and plain
// watermill-redisstream, in one `go test -bench` run against one Redis
// (`make bench`). The benchmarks live in bench_test.go; this file holds the
// small pure helpers they share. docs/benchmarks.md has the results and what
// they mean.
//
// The benchmarks need a single Redis (REDIS_URL, default
// redis://127.0.0.1:6379/0); connection counts use CLIENT LIST, which a Redis
// Cluster answers per node, so they are not meant for a cluster.
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
