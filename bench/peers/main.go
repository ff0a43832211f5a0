// Command peers runs the same four scenarios on the bus and on its peers —
// plain go-redis (the ceiling), watermill-redisstream, watermill-nats v2 on
// NATS JetStream and watermill-amqp v3 on RabbitMQ — in one process, in
// rotated rounds, and prints the ratios of the bus through router.New
// defaults to each peer, same round. Every scenario checks that every event
// reached every consumer group. It is a module of its own so that the
// eventbus module does not depend on NATS or AMQP clients
// (`make bench-peers`; docs/benchmarks.md has runs and what they mean).
//
// It writes under a prefix of its own on each server and deletes it at the
// end; it loads them hard: never point it at production servers.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/internal/rediskeys"
)

// System names, in the order of the table: the bus under test first.
const (
	SysBusRouter     = "bus-router"
	SysBusSubscriber = "bus-subscriber"
	SysGoRedis       = "go-redis"
	SysRedisstream   = "redisstream"
	SysNATS          = "nats-jetstream"
	SysRabbit        = "rabbitmq"
)

// Systems are every system.
var Systems = []string{SysBusRouter, SysBusSubscriber, SysGoRedis, SysRedisstream, SysNATS, SysRabbit}

// Config is one run.
type Config struct {
	RedisURL, NATSURL, AMQPURL string
	Sizes                      Sizes
	Rounds                     int
	Systems, Scenarios         []string
	// Progress, when set, gets one line per finished step.
	Progress io.Writer
}

// Run holds the measurements of a run: Results[scenario][system][round].
type Run struct {
	Config    Config
	Results   map[string]map[string][]Result
	LoadStart string
	LoadEnd   string
	Took      time.Duration
}

func main() {
	var cfg Config
	var systems, scenarios, cpuprofile string
	flag.StringVar(&cfg.RedisURL, "redis-url", envOr("REDIS_URL", "redis://127.0.0.1:6379/0"), "Redis")
	flag.StringVar(&cfg.NATSURL, "nats-url", envOr("NATS_URL", "nats://127.0.0.1:4222"), "NATS with JetStream")
	flag.StringVar(&cfg.AMQPURL, "amqp-url", envOr("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), "RabbitMQ")
	flag.IntVar(&cfg.Sizes.Events, "events", 20000, "events of each throughput scenario")
	flag.IntVar(&cfg.Sizes.Publishers, "publishers", 4, "publishing goroutines of the throughput scenarios")
	flag.IntVar(&cfg.Sizes.Groups, "groups", 4, "consumer groups (handlers) of the fan-out")
	flag.IntVar(&cfg.Sizes.LatencyEvents, "latency-events", 2000, "events of the latency scenario")
	flag.IntVar(&cfg.Sizes.Rate, "rate", 2000, "events/s of the latency scenario")
	flag.IntVar(&cfg.Rounds, "rounds", 3, "rounds; the order of the systems rotates from round to round")
	flag.StringVar(&systems, "systems", strings.Join(Systems, ","), "systems to run")
	flag.StringVar(&scenarios, "scenarios", strings.Join(Scenarios, ","), "scenarios to run")
	flag.StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	cfg.Systems, cfg.Scenarios = strings.Split(systems, ","), strings.Split(scenarios, ",")
	cfg.Progress = os.Stderr
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	r, err := Execute(ctx, cfg)
	if err != nil {
		pprof.StopCPUProfile()
		fatal(err)
	}
	r.WriteTable(os.Stdout)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "peers:", err)
	os.Exit(1)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// validate reports every problem with cfg at once.
func (cfg Config) validate() error {
	var errs []error
	for _, s := range cfg.Systems {
		if !slices.Contains(Systems, s) {
			errs = append(errs, fmt.Errorf("unknown system %q: use some of %s", s, strings.Join(Systems, ",")))
		}
	}
	for _, s := range cfg.Scenarios {
		if !slices.Contains(Scenarios, s) {
			errs = append(errs, fmt.Errorf("unknown scenario %q: use some of %s", s, strings.Join(Scenarios, ",")))
		}
	}
	sz := cfg.Sizes
	for _, f := range []struct {
		name string
		v    int
	}{{"events", sz.Events}, {"publishers", sz.Publishers}, {"groups", sz.Groups}, {"latency events", sz.LatencyEvents}, {"rate", sz.Rate}, {"rounds", cfg.Rounds}} {
		if f.v < 1 {
			errs = append(errs, fmt.Errorf("%s %d: use at least 1", f.name, f.v))
		}
	}
	return errors.Join(errs...)
}

// Execute opens every system, runs the rounds and deletes what it wrote.
func Execute(ctx context.Context, cfg Config) (run *Run, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	redisPrefix := "eventbus-peers:" + id + ":"
	admin := redis.NewClient(opt)
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		err = errors.Join(err, rediskeys.DeletePrefix(cctx, admin, redisPrefix), admin.Close())
	}()
	if err := admin.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("Redis at %s: %w", cfg.RedisURL, err)
	}
	systems := map[string]system{}
	defer func() {
		for _, s := range systems {
			err = errors.Join(err, s.Close())
		}
	}()
	for _, name := range cfg.Systems {
		var s system
		switch name {
		case SysBusRouter, SysBusSubscriber:
			s, err = newBus(opt, redisPrefix, name == SysBusRouter)
		case SysGoRedis:
			s = newGoRedis(opt, redisPrefix)
		case SysRedisstream:
			s, err = newRedisStream(opt, redisPrefix)
		case SysNATS:
			s, err = newNATS(cfg.NATSURL, "eventbus_peers_"+id+"_")
		case SysRabbit:
			s, err = newRabbit(cfg.AMQPURL, "eventbus-peers."+id+".")
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		systems[name] = s
	}
	run = &Run{Config: cfg, Results: map[string]map[string][]Result{}, LoadStart: loadAverage()}
	t0 := time.Now()
	steps, total := 0, cfg.Rounds*len(cfg.Scenarios)*len(cfg.Systems)
	for round := range cfg.Rounds {
		for _, sc := range cfg.Scenarios {
			if run.Results[sc] == nil {
				run.Results[sc] = map[string][]Result{}
			}
			k := round % len(cfg.Systems)
			for _, name := range slices.Concat(cfg.Systems[k:], cfg.Systems[:k]) {
				s0 := time.Now()
				topic := fmt.Sprintf("%s-r%d", sc, round+1)
				res, err := runScenario(ctx, systems[name], sc, topic, cfg.Sizes)
				if err != nil {
					return nil, fmt.Errorf("round %d %s %s: %w", round+1, sc, name, err)
				}
				run.Results[sc][name] = append(run.Results[sc][name], res)
				steps++
				if cfg.Progress != nil {
					fmt.Fprintf(cfg.Progress, "[%d/%d] round %d %s %s: %.0f events/s p50 %s p99 %s (%s)\n",
						steps, total, round+1, sc, name, res.Rate, res.P50, res.P99, time.Since(s0).Round(time.Millisecond))
				}
			}
		}
	}
	run.Took = time.Since(t0)
	run.LoadEnd = loadAverage()
	return run, nil
}

// loadAverage returns the 1, 5 and 15 minute load averages, or "".
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

// metric is one figure of a scenario.
type metric struct {
	name        string
	scenario    string
	get         func(Result) float64
	lowerBetter bool
}

var metrics = []metric{
	{"concurrent events/s", ScenarioConcurrent, func(r Result) float64 { return r.Rate }, false},
	{"drain events/s", ScenarioDrain, func(r Result) float64 { return r.Rate }, false},
	{"fan-out events/s per group", ScenarioFanout, func(r Result) float64 { return r.Rate }, false},
	{"latency p50 µs", ScenarioLatency, func(r Result) float64 { return float64(r.P50.Microseconds()) }, true},
	{"latency p99 µs", ScenarioLatency, func(r Result) float64 { return float64(r.P99.Microseconds()) }, true},
}

// target is a goal of issue 19 on a ratio of the bus router to a peer.
type target struct {
	metric, peer, op string
	limit            float64
}

var targets = []target{
	{"concurrent events/s", SysGoRedis, ">=", 0.9},
	{"fan-out events/s per group", SysGoRedis, ">=", 0.9},
	{"drain events/s", SysGoRedis, ">=", 0.5},
	{"drain events/s", SysNATS, ">=", 1.2},
	{"latency p50 µs", SysGoRedis, "<=", 1.15},
	{"latency p99 µs", SysGoRedis, "<=", 1.3},
}

// Ratios returns, per round, m of of over m of over (both in the same round).
func (r *Run) Ratios(m metric, of, over string) []float64 {
	a, b := r.Results[m.scenario][of], r.Results[m.scenario][over]
	var out []float64
	for i := range min(len(a), len(b)) {
		if d := m.get(b[i]); d > 0 {
			out = append(out, m.get(a[i])/d)
		}
	}
	return out
}

// WriteTable prints the medians of every system and the ratios of the bus
// router (and the bus subscriber) to each peer.
func (r *Run) WriteTable(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "%s %s/%s, GOMAXPROCS %d; load average at start %s, at end %s; took %s\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), r.LoadStart, r.LoadEnd, r.Took.Round(time.Second))
	fmt.Fprintf(w, "%d rounds; %d events (%d publishers) per throughput scenario, fan-out to %d groups, latency %d events at %d/s; %d-byte JSON events; every event reached every group in every step\n\n",
		c.Rounds, c.Sizes.Events, c.Sizes.Publishers, c.Sizes.Groups, c.Sizes.LatencyEvents, c.Sizes.Rate, EventSize)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprint(tw, "median over rounds\t")
	for _, s := range c.Systems {
		fmt.Fprintf(tw, "%s\t", s)
	}
	fmt.Fprintln(tw)
	for _, m := range metrics {
		if r.Results[m.scenario] == nil {
			continue
		}
		fmt.Fprintf(tw, "%s\t", m.name)
		for _, s := range c.Systems {
			var vs []float64
			for _, res := range r.Results[m.scenario][s] {
				vs = append(vs, m.get(res))
			}
			fmt.Fprintf(tw, "%.0f\t", median(vs))
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "RATIO (same round)\tOF\tOVER\tMEDIAN\tTARGET\tMET\tPER ROUND")
	met, all := 0, 0
	for _, of := range []string{SysBusRouter, SysBusSubscriber} {
		if !slices.Contains(c.Systems, of) {
			continue
		}
		for _, m := range metrics {
			for _, peer := range c.Systems {
				if peer == of || peer == SysBusRouter || (of == SysBusSubscriber && peer != SysGoRedis) {
					continue
				}
				rs := r.Ratios(m, of, peer)
				if len(rs) == 0 {
					continue
				}
				v := median(rs)
				goal, ok := "-", "-"
				if of == SysBusRouter {
					for _, t := range targets {
						if t.metric == m.name && t.peer == peer {
							goal = fmt.Sprintf("%s %.2fx", t.op, t.limit)
							all++
							if (t.op == ">=" && v >= t.limit) || (t.op == "<=" && v <= t.limit) {
								ok = "met"
								met++
							} else {
								ok = "missed"
							}
						}
					}
				}
				per := make([]string, len(rs))
				for i, x := range rs {
					per[i] = fmt.Sprintf("%.2f", x)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.2fx\t%s\t%s\t%s\n", m.name, of, peer, v, goal, ok, strings.Join(per, " "))
			}
		}
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\n%d of %d targets met (latency ratios: lower is better).\n", met, all)
}
