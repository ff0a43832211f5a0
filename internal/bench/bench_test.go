package bench_test

import (
	"context"
	"runtime/metrics"
	"slices"
	"testing"
	"time"

	"github.com/shared-infra/eventbus/internal/bench"
)

// The go test benchmarks (`make bench-go`, for benchstat) are thin wrappers
// over the scenarios of package bench, which `eventbus bench` (bench.Run)
// runs too; their names are those of the earlier go test benchmarks, so old
// benchstat comparisons still line up.

// BenchmarkPublish compares publishing with plain go-redis, plain
// watermill-redisstream and the bus: one event per call from one goroutine,
// then 100 events per call. Every variant writes the same attributes and data
// and trims with MAXLEN ~ 100000; ns/op is per call.
func BenchmarkPublish(b *testing.B) {
	ctx := context.Background()
	for _, name := range slices.Concat(bench.PublishVariants, bench.BatchVariants) {
		b.Run(name, func(b *testing.B) {
			p, err := bench.NewPublisher(ctx, target(b), name)
			must(b, err)
			defer p.Close()
			cpu0 := bench.ProcessCPU()
			for b.Loop() {
				if err := p.Publish(ctx); err != nil {
					b.Fatal(err)
				}
			}
			n := b.N * p.PerCall
			reportRate(b, n, b.Elapsed())
			reportCPU(b, n, bench.ProcessCPU()-cpu0)
			if p.PerCall > 1 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
			}
		})
	}
}

// consume starts c, waits until its handler has seen every event, stops a
// benchmark's timer, closes c and returns the measurement.
func consume(tb testing.TB, c *bench.Consumer) bench.Measurement {
	tb.Helper()
	c.Start()
	m, err := c.Wait(context.Background())
	if b, ok := tb.(*testing.B); ok {
		b.StopTimer()
	}
	if cerr := c.Close(); cerr != nil {
		tb.Errorf("close %s: %v", c.Name, cerr)
	}
	must(tb, err)
	return m
}

// BenchmarkEndToEnd consumes b.N events, published before the timer starts,
// through a Watermill router with a no-op handler; ns/op is per event and
// the time runs from the router's Run to the handler's last call.
func BenchmarkEndToEnd(b *testing.B) {
	for _, name := range bench.EndToEndVariants {
		b.Run(name, func(b *testing.B) {
			c, err := bench.NewEndToEnd(context.Background(), target(b), name, b.N)
			must(b, err)
			b.ResetTimer()
			g0 := goroutinesCreated()
			m := consume(b, c)
			reportRate(b, b.N, m.Elapsed)
			reportCPU(b, b.N, m.CPU)
			b.ReportMetric(float64(goroutinesCreated()-g0)/float64(b.N), "goroutines/event")
		})
	}
}

// goroutinesCreated is the number of goroutines this process has started
// (runtime/metrics): BenchmarkEndToEnd divides its growth by the events to
// report how many goroutines each event costs through each variant.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		panic("runtime/metrics has no /sched/goroutines-created:goroutines")
	}
	return s[0].Value.Uint64()
}

// roundTrips makes n round trips with the latency variant name (after the
// warm-up trip of its set-up, then beforeFirst) and returns their times.
func roundTrips(tb testing.TB, name string, n int, beforeFirst func()) []time.Duration {
	tb.Helper()
	ctx := context.Background()
	rt, err := bench.NewRoundTripper(ctx, target(tb), name)
	must(tb, err)
	defer func() {
		if err := rt.Close(); err != nil {
			tb.Errorf("close %s: %v", name, err)
		}
	}()
	beforeFirst()
	lat := make([]time.Duration, n)
	for i := range lat {
		if lat[i], err = rt.Trip(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	if b, ok := tb.(*testing.B); ok {
		b.StopTimer()
	}
	return lat
}

// BenchmarkIdleLatency measures publish-to-handler latency with one event in
// flight at a time (an idle subscriber woken by each event); ns/op is the
// mean round trip.
func BenchmarkIdleLatency(b *testing.B) {
	for _, name := range bench.LatencyVariants {
		b.Run(name, func(b *testing.B) {
			lat := roundTrips(b, name, b.N, b.ResetTimer)
			b.ReportMetric(us(bench.Percentile(lat, 0.50)), "p50-us")
			b.ReportMetric(us(bench.Percentile(lat, 0.99)), "p99-us")
		})
	}
}

// patternSingleRate is the last events/s of BenchmarkPattern/streams-1, the
// reference of streams-1000's "x-single" ratio in the same run.
var patternSingleRate float64

// BenchmarkPattern consumes b.N events spread over 1 or 1,000 streams with
// one bus pattern subscription through a plain Watermill router; ns/op is per
// event. conns is the Redis connections the consuming bus holds at the end;
// x-single is streams-1000's rate over streams-1's in the same run.
func BenchmarkPattern(b *testing.B) {
	for _, streams := range []int{1, bench.DefaultPatternStreams} {
		b.Run(bench.PatternVariant(streams), func(b *testing.B) {
			c, err := bench.NewPattern(context.Background(), target(b), streams, b.N)
			must(b, err)
			b.ResetTimer()
			m := consume(b, c)
			rate := m.EventsPerSec()
			b.ReportMetric(rate, "events/s")
			reportCPU(b, b.N, m.CPU)
			b.ReportMetric(float64(m.Conns), "conns")
			switch {
			case streams == 1:
				patternSingleRate = rate
			case patternSingleRate > 0:
				b.ReportMetric(rate/patternSingleRate, "x-single")
			}
		})
	}
}

// idleStreams is the number of streams of BenchmarkIdleStreams.
const idleStreams = 10_000

// BenchmarkIdleStreams subscribes one pattern that matches 10,000 registered
// types (empty streams) and measures what the idle subscription costs
// (bench.IdleResult):
//   - subscribe-ms: the time Subscribe takes (a group created on every stream);
//   - heap-bytes/stream: the live heap it adds (after GC, once its reader is
//     blocked in XREADGROUP);
//   - over one idle claim interval: cpu-%, this process's CPU, and
//     redis-cpu-%, the Redis CPU spent in the commands the subscription sends
//     (both in % of one core; the Redis figure counts every client's calls of
//     those commands, so other load on a shared Redis adds to it);
//   - ping-p99-us and ping-max-us: the PING round trip of another client of
//     the same Redis over 3 s while the subscription idles, to be read
//     against base-ping-p99-us and base-ping-max-us, the same before
//     subscribing (Redis runs one command at a time: a long command stalls
//     every client);
//   - ns/op: one non-blocking XREADGROUP naming all 10,000 streams, the
//     request the reader repeats every BlockTime while idle.
func BenchmarkIdleStreams(b *testing.B) {
	ctx := context.Background()
	s, err := bench.NewIdleStreams(ctx, target(b), idleStreams)
	must(b, err)
	defer s.Close()
	res, err := s.Measure(ctx, bench.DefaultIdleWindow, bench.DefaultPingWindow)
	must(b, err)
	for b.Loop() {
		if err := s.Probe(ctx); err != nil {
			b.Fatal(err)
		}
	}
	// Reported after the loop: b.Loop's start deletes metrics reported before.
	b.ReportMetric(float64(res.Subscribe)/float64(time.Millisecond), "subscribe-ms")
	b.ReportMetric(res.HeapPerStream, "heap-bytes/stream")
	b.ReportMetric(res.CPUPercent, "cpu-%")
	b.ReportMetric(res.RedisCPUPercent, "redis-cpu-%")
	b.ReportMetric(us(res.BasePingP99), "base-ping-p99-us")
	b.ReportMetric(us(res.BasePingMax), "base-ping-max-us")
	b.ReportMetric(us(res.PingP99), "ping-p99-us")
	b.ReportMetric(us(res.PingMax), "ping-max-us")
}
