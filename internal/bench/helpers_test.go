package bench_test

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/bench"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// service is the bus ServiceName of the buses the tests make themselves.
const service = "bench"

// target returns a bench.Target on the test Redis under a fresh prefix whose
// keys are deleted at cleanup (redistest.Prefix).
func target(tb testing.TB) *bench.Target {
	tb.Helper()
	t, err := bench.NewTarget(redistest.Client(tb), redistest.Prefix(tb))
	if err != nil {
		tb.Fatalf("bench.NewTarget: %v", err)
	}
	return t
}

// must fails tb with err, if any.
func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// newBus returns a bus with default settings on client under prefix, closed
// at cleanup. The bus never closes client.
func newBus(tb testing.TB, client redis.UniversalClient, prefix string, mutate ...func(*bus.Config)) *bus.Bus {
	tb.Helper()
	cfg := bus.Config{ServiceName: service, Client: client, StreamPrefix: prefix}
	for _, m := range mutate {
		m(&cfg)
	}
	b, err := bus.New(cfg, watermill.NopLogger{})
	if err != nil {
		tb.Fatalf("bus.New: %v", err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

// reportRate reports events/s for n events in elapsed.
func reportRate(b *testing.B, n int, elapsed time.Duration) {
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
}

// reportCPU reports this process's CPU time per event ("cpu-ns/event", all
// goroutines, GC included): unlike ns/op it hardly depends on what else the
// machine runs, but it leaves out Redis's share.
func reportCPU(b *testing.B, n int, cpu time.Duration) {
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/event")
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// fieldNames returns the sorted field names of a stream entry, joined.
func fieldNames(values map[string]any) string {
	names := slices.Sorted(maps.Keys(values))
	return strings.Join(names, ",")
}
