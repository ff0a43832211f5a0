package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/shared-infra/eventbus/internal/bench"
)

// benchOptions are the flags of bench.
type benchOptions struct {
	events, latencySamples, rounds, patternStreams, idleStreams int
	idleWindow, pingWindow                                      time.Duration
	json                                                        bool
}

func newBenchCmd(g *globals) *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark the bus beside plain go-redis and watermill-redisstream on this Redis",
		Long: `Benchmark the bus beside plain go-redis and plain watermill-redisstream, in
one process and one run, against the Redis of --redis-url/REDIS_URL, and print
each variant's throughput, CPU per event, latencies and connections, and the
ratios against their targets:

  end to end        prefilled events -> handler -> ack: the bus through
                    router.New's default middleware stack >= 3x
                    watermill-redisstream through a plain Watermill router
                    (the bus subscriber through a plain router is shown too)
  single publish    one goroutine: the bus >= 0.9x one go-redis XADD per event
  batch publish     100 events per call: the bus >= 0.6x a go-redis pipeline
                    of 100 XADDs
  idle round trip   one event at a time: p50 <= 1.2x redisstream's, bus p99 < 2ms
  pattern           one pattern subscription over --pattern-streams streams
                    >= 0.7x its rate over one stream, holding <= 3 connections
  idle streams      with --idle-streams N: the heap of an idle pattern
                    subscription over N empty streams < 1 KiB per stream, and
                    what it costs Redis and other clients

Every variant runs once per round, the variants of a scenario one after the
other (the order rotates between rounds); a ratio compares two variants of
the same round, and the value shown is the median over rounds. Read ratios,
not absolute rates: on a busy machine rates swing from run to run.

It WRITES TO THE REDIS IT IS POINTED AT: streams, consumer groups and a type
registry under a prefix of its own ("eventbus-bench:<hex>:", or --prefix,
which must hold no keys yet), deleted when it ends — also on an error or
Ctrl-C. It loads that Redis hard for the whole run and slows its other
clients: do not run it against a production Redis. A Redis Cluster is
refused (CLIENT LIST and INFO answer per node).

On a terminal a progress bar shows on stderr; otherwise stderr gets one line
per finished step. The table (or with --json one JSON document) goes to
stdout. Ctrl-C stops the run, deletes its keys and exits 1.`,
		Example: `  # a quick run against the local Redis (about 20 s)
  eventbus bench

  # what 'make bench' runs: more events, five rounds, 10,000 idle streams
  eventbus bench --events 20000 --latency-samples 2000 --rounds 5 --idle-streams 10000

  # another Redis, the report as JSON
  eventbus --redis-url redis://127.0.0.1:6380/0 bench --json > bench.json
  jq '.checks[] | select(.met == false) | .name' bench.json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			prefix := ""
			if cmd.Flag("prefix").Changed {
				prefix = g.prefix
			}
			return runBench(cmd.Context(), g, o, prefix)
		}),
	}
	f := cmd.Flags()
	f.IntVar(&o.events, "events", bench.DefaultEvents, "events of each throughput measurement (publish, end to end, pattern)")
	f.IntVar(&o.latencySamples, "latency-samples", bench.DefaultLatencySamples, "round trips of each latency measurement")
	f.IntVar(&o.rounds, "rounds", bench.DefaultRounds, "rounds: every variant is measured once per round; ratios are the median")
	f.IntVar(&o.patternStreams, "pattern-streams", bench.DefaultPatternStreams, "streams of the pattern subscription, compared with one stream")
	f.IntVar(&o.idleStreams, "idle-streams", 0, "measure an idle pattern subscription over this many empty streams (e.g. 10000; 0 skips it)")
	f.DurationVar(&o.idleWindow, "idle-window", bench.DefaultIdleWindow, "how long the idle subscription's CPU cost is watched")
	f.DurationVar(&o.pingWindow, "ping-window", bench.DefaultPingWindow, "how long another client pings Redis, before subscribing and while idle")
	f.BoolVar(&o.json, "json", false, "print the report as one JSON document")
	return cmd
}

// validate checks the flags before anything is sent, naming each bad one.
func (o benchOptions) validate() error {
	var bad []string
	for _, f := range []struct {
		name string
		v    int
		min  int
	}{
		{"--events", o.events, 1},
		{"--latency-samples", o.latencySamples, 1},
		{"--rounds", o.rounds, 1},
		{"--pattern-streams", o.patternStreams, 2},
	} {
		if f.v < f.min {
			bad = append(bad, fmt.Sprintf("invalid %s %d: use %d or more", f.name, f.v, f.min))
		}
	}
	if o.idleStreams < 0 {
		bad = append(bad, fmt.Sprintf("invalid --idle-streams %d: use a positive number, or 0 to skip", o.idleStreams))
	}
	if o.idleWindow <= 0 {
		bad = append(bad, fmt.Sprintf("invalid --idle-window %s: use a positive duration", o.idleWindow))
	}
	if o.pingWindow <= 0 {
		bad = append(bad, fmt.Sprintf("invalid --ping-window %s: use a positive duration", o.pingWindow))
	}
	if len(bad) > 0 {
		return usagef("%s", strings.Join(bad, "; "))
	}
	return nil
}

func runBench(ctx context.Context, g *globals, o benchOptions, prefix string) error {
	if err := o.validate(); err != nil {
		return err
	}
	b, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	if prefix == "" {
		prefix = bench.NewPrefix()
	}
	p := newBenchProgress(g.io.err)
	rep, err := bench.Run(ctx, bench.Options{
		Client: b.Client(), Prefix: prefix,
		Events: o.events, LatencySamples: o.latencySamples, Rounds: o.rounds,
		PatternStreams: o.patternStreams, IdleStreams: o.idleStreams,
		IdleWindow: o.idleWindow, PingWindow: o.pingWindow,
		Progress: p.update,
	})
	p.stop()
	if err != nil {
		return benchError(ctx, g, prefix, err)
	}
	if o.json {
		enc := json.NewEncoder(g.io.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return &failure{err: fmt.Errorf("write output: %w", err)}
		}
		return nil
	}
	if err := rep.WriteTable(g.io.out); err != nil {
		return &failure{err: fmt.Errorf("write output: %w", err)}
	}
	return nil
}

// benchError turns an error of bench.Run into a one-line failure or usage
// error that says what to do.
func benchError(ctx context.Context, g *globals, prefix string, err error) error {
	cleanup := "its keys were deleted"
	if errors.Is(err, bench.ErrCleanup) {
		cleanup = fmt.Sprintf("some of its keys are left: delete them with redis-cli --scan --pattern '%s*' | xargs redis-cli unlink", prefix)
	}
	switch {
	case ctx.Err() != nil:
		return &failure{err: fmt.Errorf("bench interrupted; %s", cleanup)}
	case errors.Is(err, bench.ErrPrefixInUse):
		return usagef("%v — pass another --prefix, or none for a fresh one", err)
	case errors.Is(err, bench.ErrCluster):
		return &failure{err: fmt.Errorf("%v — set --redis-url/REDIS_URL to a single Redis node", err)}
	case isUnreachable(err):
		return g.redisError("bench", err)
	default:
		return &failure{err: fmt.Errorf("bench failed: %s; %s", g.redact(err.Error()), cleanup)}
	}
}

// benchProgress shows bench.Run's progress on w: a bar redrawn in place
// when w is a terminal, else one line per finished step.
type benchProgress struct {
	w   io.Writer
	tty bool

	mu      sync.Mutex
	last    bench.Progress
	started time.Time // of the running step
	shown   bool      // a bar is on the screen
	done    chan struct{}
	wg      sync.WaitGroup
}

// barWidth is the number of cells of the progress bar.
const barWidth = 30

func newBenchProgress(w io.Writer) *benchProgress {
	f, ok := w.(*os.File)
	p := &benchProgress{w: w, tty: ok && isTerminal(f), done: make(chan struct{})}
	if p.tty {
		p.wg.Add(1)
		go p.tick()
	}
	return p
}

// update is the bench.Options.Progress callback.
func (p *benchProgress) update(s bench.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = s
	if !s.Finished {
		p.started = time.Now()
	}
	if p.tty {
		p.draw()
		return
	}
	if s.Finished {
		fmt.Fprintf(p.w, "bench: %d/%d done in %s: %s\n", s.Done, s.Total, s.Elapsed.Round(10*time.Millisecond), s.Step)
	}
}

// tick redraws the bar every 200 ms, so the running step's time moves.
func (p *benchProgress) tick() {
	defer p.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.mu.Lock()
			if p.last.Total > 0 && !p.last.Finished {
				p.draw()
			}
			p.mu.Unlock()
		}
	}
}

// draw redraws the bar; p.mu is held.
func (p *benchProgress) draw() {
	s := p.last
	if s.Total == 0 {
		return
	}
	filled := barWidth * s.Done / s.Total
	bar := strings.Repeat("#", filled) + strings.Repeat(".", barWidth-filled)
	state := "done"
	if !s.Finished {
		state = time.Since(p.started).Round(100 * time.Millisecond).String()
	}
	fmt.Fprintf(p.w, "\r\033[K[%s] %d/%d %s (%s)", bar, s.Done, s.Total, s.Step, state)
	p.shown = true
}

// stop ends the redrawing and clears the bar.
func (p *benchProgress) stop() {
	close(p.done)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
