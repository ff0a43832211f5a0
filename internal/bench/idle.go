package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
)

const (
	// DefaultIdleWindow is how long IdleStreams.Measure watches the idle
	// subscription: one claim interval of the bus and a second.
	DefaultIdleWindow = bus.DefaultClaimInterval + time.Second
	// DefaultPingWindow is how long IdleStreams.Measure pings another
	// client, before subscribing and while idle.
	DefaultPingWindow = 3 * time.Second
	// pingEvery is the PING interval of IdleStreams.Measure.
	pingEvery = 2 * time.Millisecond
)

// idleCommands are the commands an idle subscription sends, whose Redis CPU
// time (INFO commandstats) IdleStreams.Measure reports.
var idleCommands = []string{"xreadgroup", "xpending", "xclaim", "xack", "smembers"}

// IdleResult is what an idle pattern subscription over many empty streams
// costs.
type IdleResult struct {
	// Streams is the number of registered, empty streams the pattern matches.
	Streams int `json:"streams"`
	// Subscribe is the time the Subscribe call took (a group created on
	// every stream).
	Subscribe time.Duration `json:"subscribeNs"`
	// HeapPerStream is the live heap the subscription adds (after GC, once
	// its reader blocks in XREADGROUP), in bytes per stream.
	HeapPerStream float64 `json:"heapBytesPerStream"`
	// Window is how long the idle costs below were watched.
	Window time.Duration `json:"windowNs"`
	// CPUPercent is this process's CPU over Window, in % of one core.
	CPUPercent float64 `json:"cpuPercent"`
	// RedisCPUPercent is the Redis CPU spent in XREADGROUP, XPENDING,
	// XCLAIM, XACK and SMEMBERS over Window (INFO commandstats, so other
	// clients' calls of those commands add to it), in % of one core.
	RedisCPUPercent float64 `json:"redisCpuPercent"`
	// BasePingP99 and BasePingMax are another client's PING round trips
	// before subscribing; PingP99 and PingMax the same while the
	// subscription idles (Redis runs one command at a time).
	BasePingP99 time.Duration `json:"basePingP99Ns"`
	BasePingMax time.Duration `json:"basePingMaxNs"`
	PingP99     time.Duration `json:"pingP99Ns"`
	PingMax     time.Duration `json:"pingMaxNs"`
	// Probe is the mean time of one non-blocking XREADGROUP naming every
	// stream: the request the reader repeats every BlockTime while idle.
	Probe time.Duration `json:"probeNs,omitempty"`
}

// IdleStreams is the idle-streams scenario, set up: streams event types are
// registered (their streams empty) and a bus subscriber is ready to
// subscribe to all of them with one pattern. Measure, then Probe as often
// as wanted, then Close.
type IdleStreams struct {
	streams int
	admin   *redis.Client
	pinger  *redis.Client
	bus     *bus.Bus
	sub     *bus.Subscriber
	probe   *redis.XReadGroupArgs
	closers closers
}

// NewIdleStreams registers streams types on t and sets up the subscriber.
func NewIdleStreams(ctx context.Context, t *Target, streams int) (*IdleStreams, error) {
	s := &IdleStreams{streams: streams, admin: t.admin}
	if err := s.setup(ctx, t); err != nil {
		_ = s.closers.close()
		return nil, fmt.Errorf("set up idle streams: %w", err)
	}
	return s, nil
}

func (s *IdleStreams) setup(ctx context.Context, t *Target) error {
	types := typeNames(s.streams)
	if err := register(ctx, t.admin, t.prefix, types); err != nil {
		return err
	}
	b, err := openBus(t, &s.closers, "")
	if err != nil {
		return err
	}
	s.bus = b
	if s.sub, err = b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: group}); err != nil {
		return err
	}
	s.pinger = t.newClient("")
	s.closers.add(s.pinger.Close)

	keys := make([]string, 0, 2*len(types))
	for _, typ := range types {
		keys = append(keys, b.Config().StreamKey(typ))
	}
	for range types {
		keys = append(keys, ">")
	}
	s.probe = &redis.XReadGroupArgs{Group: group, Consumer: "poll-probe", Streams: keys, Count: 1, Block: -1}
	return nil
}

// Measure pings for pingWindow, subscribes, measures the heap, watches the
// idle subscription for window and pings again for pingWindow. Zero
// durations take DefaultIdleWindow and DefaultPingWindow. Call it once.
func (s *IdleStreams) Measure(ctx context.Context, window, pingWindow time.Duration) (IdleResult, error) {
	if window <= 0 {
		window = DefaultIdleWindow
	}
	if pingWindow <= 0 {
		pingWindow = DefaultPingWindow
	}
	res := IdleResult{Streams: s.streams, Window: window}
	base, err := pings(ctx, s.pinger, pingWindow)
	if err != nil {
		return res, err
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	if _, err := s.sub.Subscribe(ctx, pattern); err != nil {
		return res, fmt.Errorf("subscribe %s: %w", pattern, err)
	}
	res.Subscribe = time.Since(t0)
	// Let the reader start: first claim scan, then a blocking XREADGROUP.
	if err := sleep(ctx, bus.DefaultBlockTime/2); err != nil {
		return res, err
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	res.HeapPerStream = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(s.streams)

	cpu0 := processCPU()
	redis0, err := redisCmdTime(ctx, s.admin, idleCommands)
	if err != nil {
		return res, err
	}
	if err := sleep(ctx, window); err != nil {
		return res, err
	}
	cpu1 := processCPU()
	redis1, err := redisCmdTime(ctx, s.admin, idleCommands)
	if err != nil {
		return res, err
	}
	res.CPUPercent = 100 * float64(cpu1-cpu0) / float64(window)
	res.RedisCPUPercent = 100 * float64(redis1-redis0) / float64(window)
	idle, err := pings(ctx, s.pinger, pingWindow)
	if err != nil {
		return res, err
	}
	res.BasePingP99, res.BasePingMax = Percentile(base, 0.99), Percentile(base, 1)
	res.PingP99, res.PingMax = Percentile(idle, 0.99), Percentile(idle, 1)
	return res, nil
}

// Probe sends one non-blocking XREADGROUP naming every stream, as the
// subscriber's reader does every BlockTime while idle.
func (s *IdleStreams) Probe(ctx context.Context) error {
	if err := s.admin.XReadGroup(ctx, s.probe).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("XREADGROUP over %d streams: %w", s.streams, err)
	}
	return nil
}

// Close closes the subscription and what the scenario opened.
func (s *IdleStreams) Close() error { return s.closers.close() }

// pings sends a PING every pingEvery for d and returns the round trips.
func pings(ctx context.Context, c *redis.Client, d time.Duration) ([]time.Duration, error) {
	var out []time.Duration
	tick := time.NewTicker(pingEvery)
	defer tick.Stop()
	for end := time.Now().Add(d); time.Now().Before(end); {
		t0 := time.Now()
		if err := c.Ping(ctx).Err(); err != nil {
			return nil, fmt.Errorf("PING: %w", err)
		}
		out = append(out, time.Since(t0))
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

// redisCmdTime returns the CPU time Redis has spent in the named commands
// (INFO commandstats, usec).
func redisCmdTime(ctx context.Context, c *redis.Client, cmds []string) (time.Duration, error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO commandstats: %w", err)
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
	return total, nil
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
