package bench_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bench"
	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/router"
)

// BenchmarkPublish compares publishing with plain go-redis, plain
// watermill-redisstream and the bus: one event per call from one goroutine,
// then 100 events per call. Every variant writes the same attributes and data
// and trims with MAXLEN ~ 100000; ns/op is per call.
func BenchmarkPublish(b *testing.B) {
	ctx := context.Background()
	xadd := func(key, typ string) *redis.XAddArgs {
		return &redis.XAddArgs{Stream: key, Values: busFields(typ), MaxLen: maxLen, Approx: true}
	}

	b.Run("goredis-xadd", func(b *testing.B) {
		client, key := redistest.Client(b), redistest.Prefix(b)+evType
		cpu0 := processCPU()
		for b.Loop() {
			if err := client.XAdd(ctx, xadd(key, evType)).Err(); err != nil {
				b.Fatal(err)
			}
		}
		reportSingle(b, cpu0)
	})
	b.Run("redisstream", func(b *testing.B) {
		pub, topic := newRedisstreamPublisher(b), redistest.Prefix(b)+evType
		cpu0 := processCPU()
		for b.Loop() {
			if err := pub.Publish(topic, attrMessage(evType)); err != nil {
				b.Fatal(err)
			}
		}
		reportSingle(b, cpu0)
	})
	b.Run("bus", func(b *testing.B) {
		pub := newBus(b, redistest.Client(b), redistest.Prefix(b)).Publisher()
		publishOne := func() error { return pub.Publish(evType, message.NewMessage(watermill.NewUUID(), payload)) }
		if err := publishOne(); err != nil { // registers the type
			b.Fatal(err)
		}
		cpu0 := processCPU()
		for b.Loop() {
			if err := publishOne(); err != nil {
				b.Fatal(err)
			}
		}
		reportSingle(b, cpu0)
	})

	b.Run(fmt.Sprintf("goredis-pipeline%d", batch), func(b *testing.B) {
		client, key := redistest.Client(b), redistest.Prefix(b)+evType
		cpu0 := processCPU()
		for b.Loop() {
			pipe := client.Pipeline()
			for range batch {
				pipe.XAdd(ctx, xadd(key, evType))
			}
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
		reportBatch(b, cpu0)
	})
	b.Run(fmt.Sprintf("redisstream%d", batch), func(b *testing.B) {
		pub, topic := newRedisstreamPublisher(b), redistest.Prefix(b)+evType
		msgs := make([]*message.Message, batch)
		cpu0 := processCPU()
		for b.Loop() {
			for i := range msgs {
				msgs[i] = attrMessage(evType)
			}
			if err := pub.Publish(topic, msgs...); err != nil {
				b.Fatal(err)
			}
		}
		reportBatch(b, cpu0)
	})
	b.Run(fmt.Sprintf("bus%d", batch), func(b *testing.B) {
		pub := newBus(b, redistest.Client(b), redistest.Prefix(b)).Publisher()
		if err := pub.Publish(evType, message.NewMessage(watermill.NewUUID(), payload)); err != nil {
			b.Fatal(err)
		}
		msgs := make([]*message.Message, batch)
		cpu0 := processCPU()
		for b.Loop() {
			for i := range msgs {
				msgs[i] = message.NewMessage(watermill.NewUUID(), payload)
			}
			if err := pub.Publish(evType, msgs...); err != nil {
				b.Fatal(err)
			}
		}
		reportBatch(b, cpu0)
	})
}

// reportSingle reports the rate and CPU per event of a one-event-per-call
// benchmark whose loop started at process CPU time cpu0.
func reportSingle(b *testing.B, cpu0 time.Duration) {
	reportRate(b, b.N, b.Elapsed())
	reportCPU(b, b.N, processCPU()-cpu0)
}

// reportBatch reports the rate, the time and the CPU per event of a batch
// benchmark whose loop started at process CPU time cpu0.
func reportBatch(b *testing.B, cpu0 time.Duration) {
	n := b.N * batch
	reportRate(b, n, b.Elapsed())
	reportCPU(b, n, processCPU()-cpu0)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
}

// e2eSetup prefills n events and returns a router, not yet running, whose
// no-op handler counts them.
type e2eSetup func(tb testing.TB, n int) (runner, *counter)

// e2eSetups are the end-to-end variants, by sub-benchmark name.
var e2eSetups = []struct {
	name  string
	setup e2eSetup
}{
	{"redisstream-router", setupRedisstreamRouter},
	{"bus-subscriber", setupBusSubscriber},
	{"bus-router-defaults", setupBusRouterDefaults},
}

func setupRedisstreamRouter(tb testing.TB, n int) (runner, *counter) {
	client, topic := redistest.Client(tb), redistest.Prefix(tb)+evType
	prefill(tb, client, n, func(int) string { return topic }, func(int) any { return redisstreamValues(evType) })
	c := newCounter(n)
	return newRouter(tb, newRedisstreamSubscriber(tb), topic, c.handle), c
}

func setupBusSubscriber(tb testing.TB, n int) (runner, *counter) {
	client, prefix := redistest.Client(tb), redistest.Prefix(tb)
	key := bus.Config{StreamPrefix: prefix}.StreamKey(evType)
	prefill(tb, client, n, func(int) string { return key }, func(int) any { return busFields(evType) })
	sub, err := newBus(tb, client, prefix).NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "bench"})
	if err != nil {
		tb.Fatal(err)
	}
	c := newCounter(n)
	return newRouter(tb, sub, evType, c.handle), c
}

// setupBusRouterDefaults consumes through the router package: the bus's
// default middleware stack (stats, dead letter, max deliveries, validation,
// retry, tracing, hard timeout, recoverer) around the same no-op handler.
func setupBusRouterDefaults(tb testing.TB, n int) (runner, *counter) {
	client, prefix := redistest.Client(tb), redistest.Prefix(tb)
	key := bus.Config{StreamPrefix: prefix}.StreamKey(evType)
	prefill(tb, client, n, func(int) string { return key }, func(int) any { return busFields(evType) })
	r, err := router.New(newBus(tb, client, prefix), router.Config{}, watermill.NopLogger{})
	if err != nil {
		tb.Fatal(err)
	}
	c := newCounter(n)
	if err := r.AddHandler("noop", evType, c.handleCtx); err != nil {
		tb.Fatal(err)
	}
	return r, c
}

// BenchmarkEndToEnd consumes b.N events, published before the timer starts,
// through a Watermill router with a no-op handler; ns/op is per event and
// the time runs from the router's Run to the handler's last call.
func BenchmarkEndToEnd(b *testing.B) {
	for _, s := range e2eSetups {
		b.Run(s.name, func(b *testing.B) {
			r, c := s.setup(b, b.N)
			b.ResetTimer()
			elapsed, cpu := runUntil(b, r, c)
			reportRate(b, b.N, elapsed)
			reportCPU(b, b.N, cpu)
		})
	}
}

// latSetup returns a publish function and a router, not yet running, whose
// handler sends on seen for every message.
type latSetup func(tb testing.TB, seen chan<- struct{}) (publish func() error, r runner)

var latSetups = []struct {
	name  string
	setup latSetup
}{
	{"redisstream", setupRedisstreamLatency},
	{"bus", setupBusLatency},
}

func setupRedisstreamLatency(tb testing.TB, seen chan<- struct{}) (func() error, runner) {
	pub, topic := newRedisstreamPublisher(tb), redistest.Prefix(tb)+evType
	r := newRouter(tb, newRedisstreamSubscriber(tb), topic, func(*message.Message) error {
		seen <- struct{}{}
		return nil
	})
	return func() error { return pub.Publish(topic, attrMessage(evType)) }, r
}

func setupBusLatency(tb testing.TB, seen chan<- struct{}) (func() error, runner) {
	bb := newBus(tb, redistest.Client(tb), redistest.Prefix(tb))
	sub, err := bb.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "bench"})
	if err != nil {
		tb.Fatal(err)
	}
	r := newRouter(tb, sub, evType, func(*message.Message) error {
		seen <- struct{}{}
		return nil
	})
	pub := bb.Publisher()
	return func() error { return pub.Publish(evType, message.NewMessage(watermill.NewUUID(), payload)) }, r
}

// roundTrips publishes n events one at a time, each after the handler saw
// the one before, and returns each publish-to-handler latency.
func roundTrips(tb testing.TB, setup latSetup, n int, beforeFirst func()) []time.Duration {
	tb.Helper()
	seen := make(chan struct{}, 1)
	publish, r := setup(tb, seen)
	x := start(r)
	defer x.stop(tb)
	timeout := time.NewTimer(waitLimit)
	defer timeout.Stop()
	trip := func() time.Duration {
		t0 := time.Now()
		if err := publish(); err != nil {
			tb.Fatal(err)
		}
		select {
		case <-seen:
		case <-timeout.C:
			tb.Fatalf("no delivery in %s", waitLimit)
		}
		return time.Since(t0)
	}
	trip() // warm up: subscription started, connections open
	beforeFirst()
	lat := make([]time.Duration, n)
	for i := range lat {
		lat[i] = trip()
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
	for _, s := range latSetups {
		b.Run(s.name, func(b *testing.B) {
			lat := roundTrips(b, s.setup, b.N, b.ResetTimer)
			b.ReportMetric(us(bench.Percentile(lat, 0.50)), "p50-us")
			b.ReportMetric(us(bench.Percentile(lat, 0.99)), "p99-us")
		})
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// patternSingleRate is the last events/s of BenchmarkPattern/streams-1, the
// reference of streams-1000's "x-single" ratio in the same run.
var patternSingleRate float64

// setupPattern registers streams types, prefills n events spread evenly over
// them and returns a router with one pattern subscription ("bench.*") of a
// bus whose Redis connections are named name, and a client to count them.
func setupPattern(tb testing.TB, n, streams int) (r runner, c *counter, admin redis.UniversalClient, name string) {
	admin, prefix := redistest.Client(tb), redistest.Prefix(tb)
	types := typeNames(streams)
	register(tb, admin, prefix, types)
	cfg := bus.Config{StreamPrefix: prefix}
	prefill(tb, admin, n,
		func(i int) string { return cfg.StreamKey(types[i%streams]) },
		func(i int) any { return busFields(types[i%streams]) })
	client, name := namedClient(tb)
	sub, err := newBus(tb, client, prefix).NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "bench"})
	if err != nil {
		tb.Fatal(err)
	}
	c = newCounter(n)
	return newRouter(tb, sub, "bench.*", c.handle), c, admin, name
}

// BenchmarkPattern consumes b.N events spread over 1 or 1,000 streams with
// one bus pattern subscription through a plain Watermill router; ns/op is per
// event. conns is the Redis connections the consuming bus holds at the end;
// x-single is streams-1000's rate over streams-1's in the same run.
func BenchmarkPattern(b *testing.B) {
	for _, streams := range []int{1, 1000} {
		b.Run(fmt.Sprintf("streams-%d", streams), func(b *testing.B) {
			r, c, admin, name := setupPattern(b, b.N, streams)
			b.ResetTimer()
			x := start(r)
			elapsed := x.wait(b, c)
			conns := connCount(b, admin, name)
			x.stop(b)
			rate := float64(b.N) / elapsed.Seconds()
			b.ReportMetric(rate, "events/s")
			reportCPU(b, b.N, x.cpu)
			b.ReportMetric(float64(conns), "conns")
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

// idleCommands are the commands an idle subscription sends, whose Redis CPU
// time (INFO commandstats) BenchmarkIdleStreams reports.
var idleCommands = []string{"xreadgroup", "xpending", "xclaim", "xack", "smembers"}

// BenchmarkIdleStreams subscribes one pattern that matches 10,000 registered
// types (empty streams) and measures what the idle subscription costs:
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
	admin, prefix := redistest.Client(b), redistest.Prefix(b)
	types := typeNames(idleStreams)
	register(b, admin, prefix, types)
	bb := newBus(b, redistest.Client(b), prefix)
	sub, err := bb.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	pinger := redistest.Client(b)
	basePings := pings(b, pinger, pingWindow)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	if _, err := sub.Subscribe(ctx, "bench.*"); err != nil {
		b.Fatal(err)
	}
	subscribeTime := time.Since(t0)
	time.Sleep(bus.DefaultBlockTime / 2) // let the reader start: first claim scan, then a blocking XREADGROUP
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	heapPerStream := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / idleStreams

	window := bus.DefaultClaimInterval + time.Second
	cpu0, redis0 := processCPU(), redisCmdTime(b, admin, idleCommands)
	time.Sleep(window)
	cpu1, redis1 := processCPU(), redisCmdTime(b, admin, idleCommands)
	idlePings := pings(b, pinger, pingWindow)

	keys := make([]string, 0, 2*idleStreams)
	for _, t := range types {
		keys = append(keys, bb.Config().StreamKey(t))
	}
	for range types {
		keys = append(keys, ">")
	}
	args := &redis.XReadGroupArgs{Group: "bench", Consumer: "poll-probe", Streams: keys, Count: 1, Block: -1}
	for b.Loop() {
		if err := admin.XReadGroup(ctx, args).Err(); err != nil && !errors.Is(err, redis.Nil) {
			b.Fatal(err)
		}
	}
	// Reported after the loop: b.Loop's start deletes metrics reported before.
	b.ReportMetric(float64(subscribeTime)/float64(time.Millisecond), "subscribe-ms")
	b.ReportMetric(heapPerStream, "heap-bytes/stream")
	b.ReportMetric(100*float64(cpu1-cpu0)/float64(window), "cpu-%")
	b.ReportMetric(100*float64(redis1-redis0)/float64(window), "redis-cpu-%")
	b.ReportMetric(us(bench.Percentile(basePings, 0.99)), "base-ping-p99-us")
	b.ReportMetric(us(bench.Percentile(basePings, 1)), "base-ping-max-us")
	b.ReportMetric(us(bench.Percentile(idlePings, 0.99)), "ping-p99-us")
	b.ReportMetric(us(bench.Percentile(idlePings, 1)), "ping-max-us")
}

// pingWindow is how long BenchmarkIdleStreams pings, before and after.
const pingWindow = 3 * time.Second

// pings sends a PING every 2 ms for d and returns the round trips.
func pings(tb testing.TB, c redis.UniversalClient, d time.Duration) []time.Duration {
	tb.Helper()
	ctx := context.Background()
	var out []time.Duration
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(d); time.Now().Before(end); <-tick.C {
		t0 := time.Now()
		if err := c.Ping(ctx).Err(); err != nil {
			tb.Fatal(err)
		}
		out = append(out, time.Since(t0))
	}
	return out
}

// redisCmdTime returns the CPU time Redis has spent in the named commands
// (INFO commandstats, usec).
func redisCmdTime(tb testing.TB, c redis.UniversalClient, cmds []string) time.Duration {
	tb.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var total time.Duration
	for line := range strings.SplitSeq(info, "\n") {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !slices.Contains(cmds, strings.TrimPrefix(name, "cmdstat_")) {
			continue
		}
		for kv := range strings.SplitSeq(stats, ",") {
			if v, ok := strings.CutPrefix(kv, "usec="); ok {
				usec, _ := strconv.ParseInt(v, 10, 64)
				total += time.Duration(usec) * time.Microsecond
			}
		}
	}
	return total
}
