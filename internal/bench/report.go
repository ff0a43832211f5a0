package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
)

// Report is the result of Run. It marshals to JSON.
type Report struct {
	Machine  Machine       `json:"machine"`
	Settings Settings      `json:"settings"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"durationNs"`
	// Variants holds every variant's measurements, one per round, and their
	// medians, in a fixed order: publish, batch publish, end to end, idle
	// latency, pattern.
	Variants []VariantResult `json:"variants"`
	// Idle is the idle-streams scenario; nil when it was skipped.
	Idle *IdleResult `json:"idleStreams,omitempty"`
	// Checks are the ratios and limits against their targets.
	Checks []Check `json:"checks"`
}

// Machine is where a run ran.
type Machine struct {
	GoVersion    string `json:"goVersion"`
	OS           string `json:"os"`
	Arch         string `json:"arch"`
	GOMAXPROCS   int    `json:"gomaxprocs"`
	NumCPU       int    `json:"numCpu"`
	RedisVersion string `json:"redisVersion"`
	// LoadStart and LoadEnd are the 1, 5 and 15 minute load averages at the
	// start and the end (/proc/loadavg); empty where there is none.
	LoadStart string `json:"loadStart,omitempty"`
	LoadEnd   string `json:"loadEnd,omitempty"`
}

// Settings are the sizes a run used.
type Settings struct {
	Prefix         string `json:"prefix"`
	Events         int    `json:"events"`
	LatencySamples int    `json:"latencySamples"`
	Rounds         int    `json:"rounds"`
	PatternStreams int    `json:"patternStreams"`
	IdleStreams    int    `json:"idleStreams"`
}

// VariantResult is one variant over all rounds.
type VariantResult struct {
	// Name is the variant as the go test benchmark names it, e.g.
	// "Publish/bus" or "Pattern/streams-1000".
	Name string `json:"name"`
	// Rounds has one measurement per round, in round order.
	Rounds []Measurement `json:"rounds"`
	// The medians over rounds of events/s, CPU ns per event and the
	// latency percentiles; Conns is the most connections seen in a round.
	EventsPerSec  float64       `json:"eventsPerSec"`
	CPUNsPerEvent float64       `json:"cpuNsPerEvent"`
	P50           time.Duration `json:"p50Ns,omitempty"`
	P99           time.Duration `json:"p99Ns,omitempty"`
	Conns         int           `json:"conns,omitempty"`
}

// Metrics a Check is computed from.
const (
	MetricRate  = "events/s"
	MetricP50   = "p50"
	MetricP99   = "p99"
	MetricConns = "conns"
	MetricHeap  = "heap-bytes/stream"
)

// Check is a ratio or a value of the run, against its target when it has one.
type Check struct {
	// Name says what is compared.
	Name string `json:"name"`
	// Metric is what is taken of each variant (MetricRate, …).
	Metric string `json:"metric"`
	// Of is the variant measured; Over, when set, the variant it is divided
	// by (a ratio of the same round).
	Of   string `json:"of"`
	Over string `json:"over,omitempty"`
	// Unit is "x" for a ratio, else the unit of Value ("ms", "conns", "B").
	Unit string `json:"unit"`
	// Rounds has the value of each round; Value is their median, or their
	// maximum when Aggregate is "max".
	Rounds    []float64 `json:"rounds"`
	Value     float64   `json:"value"`
	Aggregate string    `json:"aggregate"`
	// Goal is the target; nil for a comparison shown without one.
	Goal *Goal `json:"target,omitempty"`
	// Met says whether Value meets Goal; nil without a Goal.
	Met *bool `json:"met,omitempty"`
}

// Goal is a target: Value Op Limit must hold.
type Goal struct {
	Op    string  `json:"op"` // ">=", "<=" or "<"
	Limit float64 `json:"limit"`
}

// meets reports whether v meets g.
func (g Goal) meets(v float64) bool {
	switch g.Op {
	case ">=":
		return v >= g.Limit
	case "<=":
		return v <= g.Limit
	default:
		return v < g.Limit
	}
}

func (g Goal) String(unit string) string {
	op := map[string]string{">=": "≥", "<=": "≤", "<": "<"}[g.Op]
	limit := strconv.FormatFloat(g.Limit, 'g', -1, 64)
	if unit == "x" {
		return op + " " + limit + "x"
	}
	return op + " " + limit + " " + unit
}

// newReport starts the report of a run with opts.
func newReport(ctx context.Context, admin *redis.Client, opts Options) (*Report, error) {
	m, err := machine(ctx, admin)
	if err != nil {
		return nil, err
	}
	return &Report{
		Machine: m,
		Settings: Settings{
			Prefix: opts.Prefix, Events: opts.Events, LatencySamples: opts.LatencySamples,
			Rounds: opts.Rounds, PatternStreams: opts.PatternStreams, IdleStreams: opts.IdleStreams,
		},
		Started: time.Now(),
	}, nil
}

// newVariantResult summarises the measurements of variant name.
func newVariantResult(name string, ms []Measurement) VariantResult {
	v := VariantResult{Name: name, Rounds: ms}
	var rate, cpu, p50, p99 []float64
	for _, m := range ms {
		rate = append(rate, m.EventsPerSec())
		cpu = append(cpu, m.CPUPerEvent())
		p50 = append(p50, float64(m.P50))
		p99 = append(p99, float64(m.P99))
		v.Conns = max(v.Conns, m.Conns)
	}
	v.EventsPerSec, v.CPUNsPerEvent = median(rate), median(cpu)
	v.P50, v.P99 = time.Duration(median(p50)), time.Duration(median(p99))
	return v
}

// Variant returns the result of the variant name, or nil.
func (r *Report) Variant(name string) *VariantResult {
	for i := range r.Variants {
		if r.Variants[i].Name == name {
			return &r.Variants[i]
		}
	}
	return nil
}

// MetricValue returns metric of m: events/s, a percentile in ms or the
// connection count.
func MetricValue(m Measurement, metric string) float64 {
	switch metric {
	case MetricRate:
		return m.EventsPerSec()
	case MetricP50:
		return ms(m.P50)
	case MetricP99:
		return ms(m.P99)
	case MetricConns:
		return float64(m.Conns)
	default:
		return 0
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// computeChecks returns the checks of a report whose variants are filled.
func computeChecks(r *Report) []Check {
	pat := patternKey(r.Settings.PatternStreams)
	ratio := func(name, metric, of, over string, goal *Goal) Check {
		c := Check{Name: name, Metric: metric, Of: of, Over: over, Unit: "x", Aggregate: "median", Goal: goal}
		a, b := r.Variant(of), r.Variant(over)
		for i := range min(len(a.Rounds), len(b.Rounds)) {
			if d := MetricValue(b.Rounds[i], metric); d > 0 {
				c.Rounds = append(c.Rounds, MetricValue(a.Rounds[i], metric)/d)
			}
		}
		return c
	}
	value := func(name, metric, of, unit, aggregate string, goal *Goal) Check {
		c := Check{Name: name, Metric: metric, Of: of, Unit: unit, Aggregate: aggregate, Goal: goal}
		for _, m := range r.Variant(of).Rounds {
			c.Rounds = append(c.Rounds, MetricValue(m, metric))
		}
		return c
	}
	checks := []Check{
		ratio("end to end: bus router (default stack) / redisstream router", MetricRate,
			endToEndKey(EndToEndBusRouter), endToEndKey(EndToEndRedisstream), &Goal{">=", 3}),
		ratio("end to end: bus subscriber (plain router) / redisstream router", MetricRate,
			endToEndKey(EndToEndBusSubscriber), endToEndKey(EndToEndRedisstream), nil),
		ratio("single publish: bus / go-redis XADD", MetricRate,
			publishKey(PublishBus), publishKey(PublishGoRedis), &Goal{">=", 0.9}),
		ratio("single publish: redisstream / go-redis XADD", MetricRate,
			publishKey(PublishRedisstream), publishKey(PublishGoRedis), nil),
		ratio(fmt.Sprintf("batch of %d: bus / go-redis pipeline", Batch), MetricRate,
			publishKey(PublishBusBatch), publishKey(PublishGoRedisBatch), &Goal{">=", 0.6}),
		ratio(fmt.Sprintf("batch of %d: redisstream / go-redis pipeline", Batch), MetricRate,
			publishKey(PublishRedisstreamBatch), publishKey(PublishGoRedisBatch), nil),
		ratio("idle round trip p50: bus / redisstream", MetricP50,
			latencyKey(LatencyBus), latencyKey(LatencyRedisstream), &Goal{"<=", 1.2}),
		value("idle round trip p99: bus", MetricP99, latencyKey(LatencyBus), "ms", "median", &Goal{"<", 2}),
		value("idle round trip p99: redisstream", MetricP99, latencyKey(LatencyRedisstream), "ms", "median", nil),
		ratio(fmt.Sprintf("pattern: %d streams / 1 stream", r.Settings.PatternStreams), MetricRate,
			pat, patternKey(1), &Goal{">=", 0.7}),
		value(fmt.Sprintf("pattern: connections held over %d streams", r.Settings.PatternStreams), MetricConns,
			pat, "conns", "max", &Goal{"<=", 3}),
	}
	if r.Idle != nil {
		checks = append(checks, Check{
			Name:   fmt.Sprintf("idle: heap per subscribed stream (%d streams)", r.Idle.Streams),
			Metric: MetricHeap, Of: "IdleStreams", Unit: "B", Aggregate: "median",
			Rounds: []float64{r.Idle.HeapPerStream}, Goal: &Goal{"<", 1024},
		})
	}
	for i := range checks {
		c := &checks[i]
		if c.Aggregate == "max" {
			c.Value = slices.Max(append([]float64{0}, c.Rounds...))
		} else {
			c.Value = median(c.Rounds)
		}
		if c.Goal != nil {
			met := len(c.Rounds) > 0 && c.Goal.meets(c.Value)
			c.Met = &met
		}
	}
	return checks
}

// median returns the median of vs (the mean of the middle two for an even
// count), 0 for none. It does not change vs.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(vs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// WriteTable prints the report for people: the machine, every variant's
// medians, the idle-streams scenario and the checks.
func (r *Report) WriteTable(w io.Writer) error {
	ew := &errWriter{w: w}
	m := r.Machine
	fmt.Fprintf(ew, "go %s %s/%s, GOMAXPROCS %d (%d CPUs), Redis %s\n", m.GoVersion, m.OS, m.Arch, m.GOMAXPROCS, m.NumCPU, m.RedisVersion)
	if m.LoadStart != "" {
		fmt.Fprintf(ew, "load average at start %s, at end %s\n", m.LoadStart, m.LoadEnd)
	}
	s := r.Settings
	fmt.Fprintf(ew, "%s of %d events per throughput measurement and %d round trips per latency measurement; pattern over %d streams",
		plural(s.Rounds, "round"), s.Events, s.LatencySamples, s.PatternStreams)
	if s.IdleStreams > 0 {
		fmt.Fprintf(ew, "; %d idle streams", s.IdleStreams)
	}
	fmt.Fprintf(ew, "\nkeys under %s (deleted); took %s\n\n", s.Prefix, r.Duration.Round(time.Second))

	fmt.Fprintf(ew, "median over %s\n", plural(s.Rounds, "round"))
	width := len("VARIANT")
	for _, v := range r.Variants {
		width = max(width, len(v.Name))
	}
	// Right-aligned numbers; the names, padded here, stay left-aligned.
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\tEVENTS/S\tCPU-NS/EVENT\tP50\tP99\tCONNS\t\n", width, "VARIANT")
	for _, v := range r.Variants {
		p50, p99, conns := "-", "-", "-"
		if v.P50 > 0 {
			p50, p99 = formatDuration(v.P50), formatDuration(v.P99)
		}
		if v.Conns > 0 {
			conns = strconv.Itoa(v.Conns)
		}
		fmt.Fprintf(tw, "%-*s\t%.0f\t%.0f\t%s\t%s\t%s\t\n", width, v.Name, v.EventsPerSec, v.CPUNsPerEvent, p50, p99, conns)
	}
	_ = tw.Flush()

	if i := r.Idle; i != nil {
		fmt.Fprintf(ew, "\nidle pattern subscription over %d empty streams: Subscribe %s, heap %.0f B/stream, over %s idle: CPU %.2f %%, Redis CPU %.2f %% (of one core)\n",
			i.Streams, formatDuration(i.Subscribe), i.HeapPerStream, i.Window.Round(time.Millisecond), i.CPUPercent, i.RedisCPUPercent)
		fmt.Fprintf(ew, "  another client's PING p99 %s (max %s) while idle, %s (max %s) before; one XREADGROUP naming every stream %s\n",
			formatDuration(i.PingP99), formatDuration(i.PingMax), formatDuration(i.BasePingP99), formatDuration(i.BasePingMax), formatDuration(i.Probe))
	}

	fmt.Fprintln(ew)
	tw = tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tVALUE\tTARGET\tMET\tPER ROUND")
	met, total := 0, 0
	for _, c := range r.Checks {
		goal, ok := "-", "-"
		if c.Goal != nil {
			total++
			goal, ok = c.Goal.String(c.Unit), "missed"
			if *c.Met {
				met++
				ok = "met"
			}
		}
		rounds := make([]string, len(c.Rounds))
		for i, v := range c.Rounds {
			rounds[i] = strings.TrimSuffix(strings.TrimSuffix(formatValue(v, c.Unit), " "+c.Unit), "x")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, formatValue(c.Value, c.Unit), goal, ok, strings.Join(rounds, " "))
	}
	_ = tw.Flush()
	fmt.Fprintf(ew, "\n%d of %d targets met. Ratios compare variants of the same round; read them, not the absolute rates.\n", met, total)
	return ew.err
}

// plural returns "1 round", "2 rounds".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func formatValue(v float64, unit string) string {
	switch unit {
	case "x":
		return formatFloat(v) + "x"
	case "ms":
		return formatFloat(v) + " ms"
	default: // counts and bytes
		return strconv.FormatFloat(v, 'f', 0, 64) + " " + unit
	}
}

// formatFloat prints v with 2 decimals below 10, 1 below 100, none above.
func formatFloat(v float64) string {
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
}

// formatDuration prints d in µs below 1 ms, else in ms.
func formatDuration(d time.Duration) string {
	if d < time.Millisecond {
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 0, 64) + "µs"
	}
	return formatFloat(ms(d)) + "ms"
}

// errWriter keeps the first write error and skips the writes after it.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
