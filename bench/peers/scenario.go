package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// The scenarios.
const (
	ScenarioConcurrent = "concurrent"
	ScenarioDrain      = "drain"
	ScenarioFanout     = "fanout"
	ScenarioLatency    = "latency"
)

// Scenarios are every scenario, in the order of the table.
var Scenarios = []string{ScenarioConcurrent, ScenarioDrain, ScenarioFanout, ScenarioLatency}

// waitLimit bounds every wait for deliveries, so a bug fails instead of hanging.
const waitLimit = 3 * time.Minute

// Sizes are the sizes of one run.
type Sizes struct {
	Events        int // events of each throughput scenario
	Publishers    int // publishing goroutines of the throughput scenarios
	Groups        int // consumer groups of the fan-out
	LatencyEvents int // events of the latency scenario
	Rate          int // events/s of the latency scenario
}

// Result is one scenario on one system.
type Result struct {
	// Rate is events/s: for the fan-out, events each group received per second.
	Rate float64
	// P50 and P99 are the publish → handler latencies of the latency scenario.
	P50, P99 time.Duration
	// Dups is the number of events delivered more than once.
	Dups int64
}

// runScenario runs scenario on sys under topic and checks that every event
// reached every group.
func runScenario(ctx context.Context, sys system, scenario, topic string, sz Sizes) (res Result, err error) {
	groups := []string{"g0"}
	if scenario == ScenarioFanout {
		groups = make([]string, sz.Groups)
		for i := range groups {
			groups[i] = fmt.Sprintf("g%d", i)
		}
	}
	defer func() {
		if cerr := sys.Cleanup(context.WithoutCancel(ctx), topic, groups); cerr != nil && err == nil {
			err = fmt.Errorf("cleanup: %w", cerr)
		}
	}()
	n := sz.Events
	if scenario == ScenarioLatency {
		n = sz.LatencyEvents
	}
	trackers := make([]*tracker, len(groups))
	for i := range trackers {
		trackers[i] = newTracker(n)
	}
	if scenario == ScenarioLatency {
		trackers[0].latency = make([]time.Duration, 0, n)
		trackers[0].skip = n / 10 // the first tenth warms up
	}
	on := func(g int, data []byte) { trackers[g].record(data) }
	if err := sys.Prepare(ctx, topic, groups); err != nil {
		return res, fmt.Errorf("prepare: %w", err)
	}
	var stop func() error
	subscribe := func() error {
		var err error
		stop, err = sys.Subscribe(ctx, topic, groups, on)
		return err
	}
	var t0 time.Time
	switch scenario {
	case ScenarioDrain:
		if err := publishAll(ctx, sys, topic, n, sz.Publishers); err != nil {
			return res, err
		}
		t0 = time.Now()
		if err := subscribe(); err != nil {
			return res, fmt.Errorf("subscribe: %w", err)
		}
	case ScenarioLatency:
		if err := subscribe(); err != nil {
			return res, fmt.Errorf("subscribe: %w", err)
		}
		t0 = time.Now()
		if err := publishPaced(ctx, sys, topic, n, sz.Rate); err != nil {
			_ = stop()
			return res, err
		}
	default:
		if err := subscribe(); err != nil {
			return res, fmt.Errorf("subscribe: %w", err)
		}
		t0 = time.Now()
		if err := publishAll(ctx, sys, topic, n, sz.Publishers); err != nil {
			_ = stop()
			return res, err
		}
	}
	werr := waitAll(ctx, trackers)
	elapsed := time.Since(t0)
	serr := stop()
	if werr != nil {
		return res, werr
	}
	if serr != nil {
		return res, fmt.Errorf("stop: %w", serr)
	}
	res.Rate = float64(n) / elapsed.Seconds()
	for _, t := range trackers {
		res.Dups += t.dups.Load()
	}
	if scenario == ScenarioLatency {
		lat := trackers[0].latency
		res.P50, res.P99 = percentile(lat, 0.50), percentile(lat, 0.99)
	}
	return res, nil
}

// waitAll waits until every tracker has seen every event, and fails on a
// malformed delivery.
func waitAll(ctx context.Context, trackers []*tracker) error {
	timeout := time.NewTimer(waitLimit)
	defer timeout.Stop()
	for i, t := range trackers {
		select {
		case <-t.done:
		case <-timeout.C:
			return fmt.Errorf("group %d: %d of %d events missing after %s", i, t.missing(), len(t.seen), waitLimit)
		case <-ctx.Done():
			return ctx.Err()
		}
		if b := t.bad.Load(); b > 0 {
			return fmt.Errorf("group %d: %d malformed deliveries", i, b)
		}
	}
	return nil
}

// publishAll publishes events 0…n-1 from publishers goroutines (event i
// from goroutine i % publishers), each with a publisher of its own.
func publishAll(ctx context.Context, sys system, topic string, n, publishers int) error {
	var wg sync.WaitGroup
	errs := make([]error, publishers)
	for p := range publishers {
		publish, closeFn, err := sys.Publisher(ctx, topic)
		if err != nil {
			return fmt.Errorf("publisher: %w", err)
		}
		wg.Go(func() {
			defer func() { errs[p] = errors.Join(errs[p], closeFn()) }()
			for i := p; i < n; i += publishers {
				if err := publish(ctx, newEvent(i)); err != nil {
					errs[p] = fmt.Errorf("publish event %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// publishPaced publishes events 0…n-1 from one goroutine at rate events/s,
// each at its scheduled time (open loop: a late event does not delay the
// schedule of the next).
func publishPaced(ctx context.Context, sys system, topic string, n, rate int) (err error) {
	publish, closeFn, err := sys.Publisher(ctx, topic)
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	defer func() { err = errors.Join(err, closeFn()) }()
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		if err := publish(ctx, newEvent(i)); err != nil {
			return fmt.Errorf("publish event %d: %w", i, err)
		}
	}
	return nil
}

// percentile returns the p-quantile of ds by nearest rank; it sorts ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := int(float64(len(ds))*p+0.999999999) - 1
	return ds[min(max(rank, 0), len(ds)-1)]
}

// median returns the median of vs (the mean of the middle two for an even count).
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
