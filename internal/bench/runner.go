package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/internal/rediskeys"
)

// Defaults of Options. A zero field takes its default.
const (
	// DefaultEvents is the number of events of each throughput measurement.
	DefaultEvents = 10_000
	// DefaultLatencySamples is the number of round trips of each latency
	// measurement.
	DefaultLatencySamples = 1_000
	// DefaultRounds is the number of rounds.
	DefaultRounds = 3
	// DefaultPatternStreams is the number of streams of the pattern
	// scenario's many-streams variant.
	DefaultPatternStreams = 1_000
	// DefaultPrefixBase starts the default prefix: DefaultPrefixBase, 8 random
	// hex digits and ":".
	DefaultPrefixBase = "eventbus-bench:"
	// cleanupTimeout bounds the deletion of the run's keys.
	cleanupTimeout = 2 * time.Minute
)

// ErrInvalidOptions is returned (wrapped) for options Run cannot use.
var ErrInvalidOptions = errors.New("invalid bench options")

// ErrCleanup is returned (wrapped, possibly joined with the error that
// ended the run) when the run's keys could not all be deleted.
var ErrCleanup = errors.New("could not delete the benchmark's keys")

// ErrPrefixInUse is returned when keys already start with Options.Prefix:
// Run deletes every key under its prefix at the end, so it must own it.
var ErrPrefixInUse = errors.New("keys already exist under the prefix")

// Options configures Run.
type Options struct {
	// Client is the Redis to run on: a *redis.Client (a Redis Cluster gives
	// ErrCluster). Required. Run writes under Prefix only and never closes
	// it; the scenarios open connections of their own with its options.
	Client redis.UniversalClient
	// Prefix starts every key the run writes; every key under it is deleted
	// when Run returns, also after an error or cancellation. Keys must not
	// exist under it yet (ErrPrefixInUse). Default DefaultPrefixBase, 8
	// random hex digits and ":".
	Prefix string
	// Events is the number of events of each throughput measurement
	// (publish, batch publish, end to end, pattern). Default DefaultEvents.
	Events int
	// LatencySamples is the number of round trips of each latency
	// measurement. Default DefaultLatencySamples.
	LatencySamples int
	// Rounds is how many times every variant is measured; within a round the
	// variants of a scenario run one after the other, in an order rotated
	// from round to round. Ratios are the median over rounds. Default
	// DefaultRounds.
	Rounds int
	// PatternStreams is the number of streams of the pattern scenario's
	// many-streams variant, compared with its one-stream variant. Default
	// DefaultPatternStreams.
	PatternStreams int
	// IdleStreams is the number of registered, empty streams of the
	// idle-streams scenario (measured once, after the rounds); 0 skips it.
	IdleStreams int
	// IdleWindow is how long the idle-streams scenario watches the idle
	// subscription's CPU cost. Default DefaultIdleWindow.
	IdleWindow time.Duration
	// PingWindow is how long the idle-streams scenario pings another client,
	// before subscribing and while idle. Default DefaultPingWindow.
	PingWindow time.Duration
	// Progress, when set, is called from Run's goroutine when each step
	// starts and when it finishes.
	Progress func(Progress)
}

// Progress reports a step of Run.
type Progress struct {
	// Done is the number of steps finished, Total the number of all steps.
	Done, Total int
	// Step names the step, e.g. "round 2/3 EndToEnd/bus-subscriber".
	Step string
	// Finished is false when Step starts, true when it has finished.
	Finished bool
	// Elapsed is the time Step took, once finished.
	Elapsed time.Duration
}

// NewPrefix returns a fresh default prefix: DefaultPrefixBase, 8 random hex
// digits and ":".
func NewPrefix() string {
	var r [4]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails (Go 1.24+)
	return DefaultPrefixBase + hex.EncodeToString(r[:]) + ":"
}

func (o *Options) setDefaults() {
	if o.Prefix == "" {
		o.Prefix = NewPrefix()
	}
	if o.Events == 0 {
		o.Events = DefaultEvents
	}
	if o.LatencySamples == 0 {
		o.LatencySamples = DefaultLatencySamples
	}
	if o.Rounds == 0 {
		o.Rounds = DefaultRounds
	}
	if o.PatternStreams == 0 {
		o.PatternStreams = DefaultPatternStreams
	}
	if o.IdleWindow == 0 {
		o.IdleWindow = DefaultIdleWindow
	}
	if o.PingWindow == 0 {
		o.PingWindow = DefaultPingWindow
	}
}

// Validate reports every problem with the options at once. It never changes
// o; zero values, which take defaults, are valid.
func (o Options) Validate() error {
	var errs []error
	if o.Client == nil {
		errs = append(errs, errors.New("a Client is required"))
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		errs = append(errs, fmt.Errorf("prefix %q must not contain '{' or '}'", o.Prefix))
	}
	for _, f := range []struct {
		name string
		v    int
		min  int
	}{
		{"events", o.Events, 1},
		{"latency samples", o.LatencySamples, 1},
		{"rounds", o.Rounds, 1},
		{"pattern streams", o.PatternStreams, 2},
	} {
		if f.v != 0 && f.v < f.min {
			errs = append(errs, fmt.Errorf("%s %d: use at least %d (0 for the default)", f.name, f.v, f.min))
		}
	}
	if o.IdleStreams < 0 {
		errs = append(errs, fmt.Errorf("idle streams %d: use a positive number, or 0 to skip the scenario", o.IdleStreams))
	}
	if o.IdleWindow < 0 || o.PingWindow < 0 {
		errs = append(errs, errors.New("idle and ping windows must not be negative (0 for the default)"))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
}

// step is one measurement of Run.
type step struct {
	round   int    // 1-based
	variant string // e.g. "Publish/bus"
	run     func(ctx context.Context, t *Target) (Measurement, error)
}

// Run runs every scenario on opts.Client, in rounds, and returns the
// report. Every key it wrote is deleted before it returns, also on error
// or when ctx is cancelled (the returned error then wraps ctx.Err()).
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	t, err := NewTarget(opts.Client, opts.Prefix)
	if err != nil {
		return nil, err
	}
	if err := checkNotCluster(ctx, t.admin); err != nil {
		return nil, err
	}
	inUse, err := hasKeys(ctx, t.admin, t.prefix)
	if err != nil {
		return nil, err
	}
	if inUse {
		return nil, fmt.Errorf("%w %q: choose a prefix of the benchmark's own (everything under it is deleted at the end)", ErrPrefixInUse, t.prefix)
	}
	rep, err := newReport(ctx, t.admin, opts)
	if err != nil {
		return nil, err
	}
	err = runSteps(ctx, t, opts, rep)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if cerr := rediskeys.DeletePrefix(cctx, t.admin, t.prefix); cerr != nil {
		err = errors.Join(err, fmt.Errorf("%w (%s*): %w", ErrCleanup, t.prefix, cerr))
	}
	if err != nil {
		return nil, err
	}
	rep.Machine.LoadEnd = loadAverage()
	rep.Duration = time.Since(rep.Started)
	rep.Checks = computeChecks(rep)
	return rep, nil
}

// runSteps runs the rounds, then the idle-streams scenario, filling rep.
func runSteps(ctx context.Context, t *Target, opts Options, rep *Report) error {
	var steps []step
	for round := 1; round <= opts.Rounds; round++ {
		steps = append(steps, roundSteps(opts, round)...)
	}
	total := len(steps)
	if opts.IdleStreams > 0 {
		total++
	}
	results := map[string][]Measurement{}
	progress := func(p Progress) {
		if opts.Progress != nil {
			p.Total = total
			opts.Progress(p)
		}
	}
	for i, s := range steps {
		name := fmt.Sprintf("round %d/%d %s", s.round, opts.Rounds, s.variant)
		progress(Progress{Done: i, Step: name})
		t0 := time.Now()
		sub := t.sub(fmt.Sprintf("r%d-%s", s.round, strings.ToLower(strings.ReplaceAll(s.variant, "/", "-"))))
		m, err := s.run(ctx, sub)
		if err == nil {
			err = rediskeys.DeletePrefix(ctx, t.admin, sub.prefix) // keep Redis's memory small between steps
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		results[s.variant] = append(results[s.variant], m)
		progress(Progress{Done: i + 1, Step: name, Finished: true, Elapsed: time.Since(t0)})
	}
	for _, v := range variantOrder(opts) {
		rep.Variants = append(rep.Variants, newVariantResult(v, results[v]))
	}
	if opts.IdleStreams > 0 {
		name := fmt.Sprintf("IdleStreams (%d streams)", opts.IdleStreams)
		progress(Progress{Done: len(steps), Step: name})
		t0 := time.Now()
		res, err := runIdle(ctx, t.sub("idle"), opts)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rep.Idle = &res
		progress(Progress{Done: total, Step: name, Finished: true, Elapsed: time.Since(t0)})
	}
	return nil
}

// Variant keys: the go test benchmark names.
func publishKey(v string) string    { return "Publish/" + v }
func endToEndKey(v string) string   { return "EndToEnd/" + v }
func latencyKey(v string) string    { return "IdleLatency/" + v }
func patternKey(streams int) string { return "Pattern/" + PatternVariant(streams) }

// variantOrder is the order of the variants in the report.
func variantOrder(opts Options) []string {
	var out []string
	for _, v := range slices.Concat(PublishVariants, BatchVariants) {
		out = append(out, publishKey(v))
	}
	for _, v := range EndToEndVariants {
		out = append(out, endToEndKey(v))
	}
	for _, v := range LatencyVariants {
		out = append(out, latencyKey(v))
	}
	return append(out, patternKey(1), patternKey(opts.PatternStreams))
}

// roundSteps returns the steps of one round: each scenario's variants one
// after the other, their order rotated by the round.
func roundSteps(opts Options, round int) []step {
	type measure = func(ctx context.Context, t *Target) (Measurement, error)
	var scenarios [][]step
	add := func(keys []string, runs []measure) {
		s := make([]step, len(keys))
		for i := range keys {
			s[i] = step{round: round, variant: keys[i], run: runs[i]}
		}
		scenarios = append(scenarios, s)
	}
	for _, names := range [][]string{PublishVariants, BatchVariants} {
		var keys []string
		var runs []measure
		for _, name := range names {
			keys = append(keys, publishKey(name))
			runs = append(runs, func(ctx context.Context, t *Target) (Measurement, error) {
				return runPublish(ctx, t, name, opts.Events)
			})
		}
		add(keys, runs)
	}
	var keys []string
	var runs []measure
	for _, name := range EndToEndVariants {
		keys = append(keys, endToEndKey(name))
		runs = append(runs, func(ctx context.Context, t *Target) (Measurement, error) {
			c, err := NewEndToEnd(ctx, t, name, opts.Events)
			if err != nil {
				return Measurement{}, err
			}
			return consume(ctx, c)
		})
	}
	add(keys, runs)
	keys, runs = nil, nil
	for _, name := range LatencyVariants {
		keys = append(keys, latencyKey(name))
		runs = append(runs, func(ctx context.Context, t *Target) (Measurement, error) {
			return runLatency(ctx, t, name, opts.LatencySamples)
		})
	}
	add(keys, runs)
	keys, runs = nil, nil
	for _, streams := range []int{1, opts.PatternStreams} {
		keys = append(keys, patternKey(streams))
		runs = append(runs, func(ctx context.Context, t *Target) (Measurement, error) {
			c, err := NewPattern(ctx, t, streams, opts.Events)
			if err != nil {
				return Measurement{}, err
			}
			return consume(ctx, c)
		})
	}
	add(keys, runs)

	var out []step
	for _, s := range scenarios {
		k := (round - 1) % len(s)
		out = append(out, s[k:]...)
		out = append(out, s[:k]...)
	}
	return out
}

// runPublish publishes events events (rounded up to whole calls) with the
// publish variant name.
func runPublish(ctx context.Context, t *Target, name string, events int) (m Measurement, err error) {
	p, err := NewPublisher(ctx, t, name)
	if err != nil {
		return m, err
	}
	defer func() {
		if cerr := p.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", name, cerr)
		}
	}()
	calls := (events + p.PerCall - 1) / p.PerCall
	cpu0, t0 := processCPU(), time.Now()
	for i := range calls {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return m, err
			}
		}
		if err := p.Publish(ctx); err != nil {
			return m, fmt.Errorf("publish: %w", err)
		}
	}
	return Measurement{Events: calls * p.PerCall, Elapsed: time.Since(t0), CPU: processCPU() - cpu0}, nil
}

// consume runs c until its handler has seen every event, then closes it.
func consume(ctx context.Context, c *Consumer) (m Measurement, err error) {
	c.Start()
	m, err = c.Wait(ctx)
	if cerr := c.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", c.Name, cerr)
	}
	return m, err
}

// runLatency makes samples round trips with the latency variant name.
func runLatency(ctx context.Context, t *Target, name string, samples int) (m Measurement, err error) {
	rt, err := NewRoundTripper(ctx, t, name)
	if err != nil {
		return m, err
	}
	defer func() {
		if cerr := rt.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", name, cerr)
		}
	}()
	lat := make([]time.Duration, samples)
	cpu0, t0 := processCPU(), time.Now()
	for i := range lat {
		if lat[i], err = rt.Trip(ctx); err != nil {
			return m, err
		}
	}
	m = Measurement{Events: samples, Elapsed: time.Since(t0), CPU: processCPU() - cpu0}
	m.P50, m.P99 = Percentile(lat, 0.50), Percentile(lat, 0.99)
	return m, nil
}

// runIdle measures the idle-streams scenario, with a few probes.
func runIdle(ctx context.Context, t *Target, opts Options) (res IdleResult, err error) {
	s, err := NewIdleStreams(ctx, t, opts.IdleStreams)
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := s.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}()
	if res, err = s.Measure(ctx, opts.IdleWindow, opts.PingWindow); err != nil {
		return res, err
	}
	const probes = 10
	t0 := time.Now()
	for range probes {
		if err := s.Probe(ctx); err != nil {
			return res, err
		}
	}
	res.Probe = time.Since(t0) / probes
	return res, nil
}

// loadAverage returns the 1, 5 and 15 minute load averages from
// /proc/loadavg, or "" where there is none.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// machine describes where the run ran.
func machine(ctx context.Context, admin *redis.Client) (Machine, error) {
	info, err := admin.Info(ctx, "server").Result()
	if err != nil {
		return Machine{}, fmt.Errorf("INFO server: %w", err)
	}
	return Machine{
		GoVersion:    runtime.Version(),
		OS:           runtime.GOOS,
		Arch:         runtime.GOARCH,
		GOMAXPROCS:   runtime.GOMAXPROCS(0),
		NumCPU:       runtime.NumCPU(),
		RedisVersion: infoField(info, "redis_version"),
		LoadStart:    loadAverage(),
	}, nil
}
