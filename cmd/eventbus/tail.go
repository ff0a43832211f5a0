package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/shared-infra/eventbus/bus"
)

// Tail timings.
const (
	tailBlock          = time.Second     // one XREAD waits this long for entries
	tailReadCount      = 100             // entries per stream per XREAD
	defaultTailRefresh = 2 * time.Second // registry re-read for new types
	// tailClusterPoll is the wait between non-blocking reads of several
	// cluster slots.
	tailClusterPoll = 100 * time.Millisecond
)

type tailOptions struct {
	from    string
	count   int
	json    bool
	refresh time.Duration
}

func newTailCmd(g *globals) *cobra.Command {
	var o tailOptions
	cmd := &cobra.Command{
		Use:   "tail PATTERN",
		Short: "Follow events live (no consumer group, nothing acked)",
		Long: `Follow the events whose type matches PATTERN as they are published.

tail reads the streams with XREAD, like a fan-out subscriber: it joins no
consumer group and acks nothing, so it never takes events from a handler and
leaves no trace in Redis. It follows every stream of the type registry that
matches PATTERN and re-reads the registry every --refresh, so types first
published after tail started are followed too (from their first entry after
the start position).

PATTERN is an event type or a NATS-style pattern: '*' matches exactly one
token, '>' one or more trailing tokens. Quote it for the shell.

By default tail shows only events published after it starts. --from replays
history first: an entry id (exclusive, as XREAD: --from 0 is every retained
event; pass the streamid of an event to resume after it) or a duration
(--from 10m: the last ten minutes, by the Redis server's clock).

Output is one line per event: readable text on a terminal (time, type, id,
subject/room/user, data), JSON lines otherwise (or with --json), each a
CloudEvents JSON object with the Redis entry id as "streamid". Events of
different streams are merged in entry id (time) order within each read.`,
		Example: `  # everything under photo, live
  eventbus tail 'photo.>'

  # replay the last 10 minutes of one type, then follow
  eventbus tail photo.uploaded --from 10m

  # every retained event of every type, as JSON lines, then stop after 100
  eventbus tail '>' --from 0 --count 100 --json | jq .type

  # resume after an event seen before
  eventbus tail 'photo.*' --from 1700000000000-0`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return runTail(cmd.Context(), g, o, args[0])
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.from, "from", "", "replay from an entry id (exclusive; 0 = all) or a duration ago (10m, 2h); default: only new events")
	f.IntVar(&o.count, "count", 0, "exit after this many events (0 = follow until interrupted)")
	f.BoolVar(&o.json, "json", false, "print JSON lines even on a terminal")
	f.DurationVar(&o.refresh, "refresh", defaultTailRefresh, "how often to look for new event types matching PATTERN")
	return cmd
}

var entryIDRe = regexp.MustCompile(`^[0-9]+(-[0-9]+)?$`)

// parseFrom checks --from; it returns the id to start after, or the duration
// to go back, or neither for "now".
func parseFrom(s string) (id string, ago time.Duration, err error) {
	switch {
	case s == "", s == "$", s == "now":
		return "", 0, nil
	case entryIDRe.MatchString(s):
		if !strings.Contains(s, "-") {
			s += "-0"
		}
		if _, _, err := bus.ParseStreamID(s); err != nil {
			return "", 0, usagef("invalid --from %q: %v", s, err)
		}
		return s, 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return "", 0, usagef("invalid --from %q: use an entry id (0, 1700000000000-0) or a positive duration (30s, 10m, 2h)", s)
	}
	return "", d, nil
}

func runTail(ctx context.Context, g *globals, o tailOptions, pattern string) error {
	if err := bus.ValidatePattern(pattern); err != nil {
		return usagef("%w", err)
	}
	from, ago, err := parseFrom(o.from)
	if err != nil {
		return err
	}
	if o.count < 0 {
		return usagef("invalid --count %d: use a positive number, or 0 to follow until interrupted", o.count)
	}
	if o.refresh < 10*time.Millisecond {
		return usagef("invalid --refresh %s: use at least 10ms", o.refresh)
	}
	b, err := g.connectWait(ctx, "tail")
	if err != nil {
		return err
	}
	defer b.Close()
	t := &tailer{
		g: g, client: b.Client(), cfg: b.Config(), pattern: pattern, opts: o,
		pos: map[string]string{}, topic: map[string]string{},
		out: bufio.NewWriterSize(g.io.out, 64<<10), json: o.json || !g.io.outTTY,
	}
	if from == "" {
		var now time.Time
		err := retryRedis(ctx, g, "tail", func() (err error) {
			now, err = b.Client().Time(ctx).Result()
			return err
		})
		if err != nil {
			return t.readError(ctx, "read the Redis server time", err)
		}
		from = justBefore(now.Add(-ago).UnixMilli())
		if ago == 0 {
			from = fmt.Sprintf("%d-0", now.UnixMilli())
		}
	}
	t.start = from
	err = t.run(ctx)
	if ferr := t.out.Flush(); err == nil && ferr != nil {
		err = &failure{err: fmt.Errorf("write output: %w", ferr)}
	}
	return err
}

// tailer follows the streams matching a pattern with XREAD.
type tailer struct {
	g       *globals
	client  redis.UniversalClient
	cfg     bus.Config
	pattern string
	opts    tailOptions
	start   string // entry id every stream is read after

	keys  []string          // stream keys followed, sorted
	slot  map[string]int64  // stream key -> hash slot; nil unless on a cluster
	pos   map[string]string // stream key -> last entry id read
	topic map[string]string // stream key -> event type
	out   *bufio.Writer
	json  bool
	seen  int

	typeWidth int // the longest type followed (up to 40): pretty's column
}

// refresh adds the streams of types matching the pattern that are new in the
// registry. A plain type is followed whether or not it is registered yet.
func (t *tailer) refresh(ctx context.Context) error {
	var types []string
	if !bus.IsPattern(t.pattern) {
		types = []string{t.pattern}
	} else {
		members, err := t.client.SMembers(ctx, t.cfg.RegistryKey()).Result()
		if err != nil {
			return err
		}
		types = members
	}
	for _, typ := range types {
		key := t.cfg.StreamKey(typ)
		if _, ok := t.pos[key]; ok || bus.ValidateType(typ) != nil || !bus.Match(t.pattern, typ) {
			continue
		}
		if _, cluster := t.client.(*redis.ClusterClient); cluster {
			s, err := t.client.ClusterKeySlot(ctx, key).Result()
			if err != nil {
				return err
			}
			if t.slot == nil {
				t.slot = map[string]int64{}
			}
			t.slot[key] = s
		}
		t.pos[key] = t.start
		t.topic[key] = typ
		t.typeWidth = max(t.typeWidth, min(len(typ), 40))
		t.keys = append(t.keys, key)
	}
	slices.Sort(t.keys)
	return nil
}

func (t *tailer) run(ctx context.Context) error {
	if t.g.io.outTTY && !t.json {
		what := "new events"
		if t.opts.from != "" {
			what = "from " + t.opts.from
		}
		if t.opts.count > 0 {
			what += fmt.Sprintf(", until %d events", t.opts.count)
		}
		fmt.Fprintf(t.g.io.err, "following %s (%s); Ctrl-C to stop\n", t.pattern, what)
	}
	var lastRefresh time.Time
	w := newRedisWait(t.g, "tail")
	for {
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(lastRefresh) >= t.opts.refresh {
			if err := t.refresh(ctx); err != nil {
				if bus.IsTransient(err) && w.wait(ctx, err) {
					continue // Redis restarting: keep the positions, retry
				}
				return t.readError(ctx, "read the type registry", err)
			}
			lastRefresh = time.Now()
			w.ok()
		}
		if len(t.keys) == 0 { // nothing matches yet: wait for the next refresh
			timer := time.NewTimer(t.opts.refresh)
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-timer.C:
			}
			continue
		}
		count := int64(tailReadCount)
		if t.opts.count > 0 {
			count = min(count, int64(t.opts.count-t.seen))
		}
		res, err := t.read(ctx, count)
		if err != nil {
			if bus.IsTransient(err) && w.wait(ctx, err) {
				continue
			}
			return t.readError(ctx, "read events", err)
		}
		w.ok()
		done, err := t.print(res)
		if err != nil || done {
			return err
		}
	}
}

func (t *tailer) readError(ctx context.Context, doing string, err error) error {
	if ctx.Err() != nil {
		return nil // interrupted: a normal end of tail
	}
	return t.g.redisError(doing, err)
}

// print writes the entries of one XREAD, merged in id order, and reports
// whether --count is reached.
func (t *tailer) print(res []redis.XStream) (bool, error) {
	var entries []entry
	for _, s := range res {
		if len(s.Messages) == 0 {
			continue
		}
		for _, x := range s.Messages {
			entries = append(entries, decodeEntry(t.topic[s.Stream], x))
		}
		t.pos[s.Stream] = s.Messages[len(s.Messages)-1].ID
	}
	slices.SortStableFunc(entries, func(a, b entry) int { return compareStreamIDs(a.StreamID, b.StreamID) })
	now := time.Now()
	for _, e := range entries {
		if t.json {
			t.out.Write(e.JSON())
		} else {
			t.out.WriteString(e.Pretty(now, t.typeWidth))
		}
		t.out.WriteByte('\n')
		t.seen++
		if t.opts.count > 0 && t.seen >= t.opts.count {
			break
		}
	}
	if err := t.out.Flush(); err != nil {
		return true, &failure{err: fmt.Errorf("write output: %w", err)}
	}
	return t.opts.count > 0 && t.seen >= t.opts.count, nil
}

func compareStreamIDs(a, b string) int {
	am, as, _ := bus.ParseStreamID(a)
	bm, bs, _ := bus.ParseStreamID(b)
	if c := cmp.Compare(am, bm); c != 0 {
		return c
	}
	return cmp.Compare(as, bs)
}

// justBefore returns the largest entry id before millisecond ms, so that an
// exclusive XREAD from it includes every entry of ms.
func justBefore(ms int64) string {
	if ms <= 0 {
		return "0-0"
	}
	return fmt.Sprintf("%d-%d", ms-1, uint64(math.MaxUint64))
}

// read does one XREAD of every stream followed, blocking up to tailBlock
// (or --refresh) for new entries. In a cluster, streams of different hash
// slots cannot share an XREAD (CROSSSLOT): there it pipelines one
// non-blocking XREAD per slot (go-redis sends each node its share) and, when
// none returned anything, waits tailClusterPoll.
func (t *tailer) read(ctx context.Context, count int64) ([]redis.XStream, error) {
	block := min(tailBlock, t.opts.refresh)
	groups := t.slotGroups()
	if len(groups) == 1 {
		res, err := t.client.XRead(ctx, &redis.XReadArgs{Streams: t.streamsArg(groups[0]), Count: count, Block: block}).Result()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		return res, err
	}
	pipe := t.client.Pipeline()
	cmds := make([]*redis.XStreamSliceCmd, len(groups))
	for i, g := range groups {
		cmds[i] = pipe.XRead(ctx, &redis.XReadArgs{Streams: t.streamsArg(g), Count: count, Block: -1})
	}
	_, _ = pipe.Exec(ctx) // each command's error is read below
	var res []redis.XStream
	for _, c := range cmds {
		r, err := c.Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, err
		}
		res = append(res, r...)
	}
	if len(res) == 0 {
		timer := time.NewTimer(min(tailClusterPoll, block))
		defer timer.Stop()
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
	}
	return res, nil
}

// slotGroups splits the keys followed by hash slot (one group unless on a
// cluster), in slot order.
func (t *tailer) slotGroups() [][]string {
	if t.slot == nil {
		return [][]string{t.keys}
	}
	by := map[int64][]string{}
	for _, k := range t.keys {
		by[t.slot[k]] = append(by[t.slot[k]], k)
	}
	slots := slices.Sorted(maps.Keys(by))
	groups := make([][]string, 0, len(slots))
	for _, s := range slots {
		groups = append(groups, by[s])
	}
	return groups
}

// streamsArg is XREAD's STREAMS argument for keys: the keys, then the id
// each is read after.
func (t *tailer) streamsArg(keys []string) []string {
	streams := make([]string, 0, 2*len(keys))
	streams = append(streams, keys...)
	for _, k := range keys {
		streams = append(streams, t.pos[k])
	}
	return streams
}

// connectWait opens the bus and waits until Redis answers: while Redis
// cannot be reached (bus.IsTransient: refused, reset, timeouts, LOADING)
// it says so once on stderr and retries with backoff and jitter, up to 1 s
// apart, until ctx ends. A misconfiguration (credentials refused, an ACL
// denial, TLS) fails at once with the error. The caller closes the bus.
func (g *globals) connectWait(ctx context.Context, who string) (*bus.Bus, error) {
	cfg, err := g.config()
	if err != nil {
		return nil, err
	}
	b, err := bus.New(cfg, nil)
	if err != nil {
		return nil, classify(err)
	}
	err = retryRedis(ctx, g, who, func() error {
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		defer cancel()
		return b.Client().Ping(pctx).Err()
	})
	if err != nil {
		_ = b.Close()
		if ctx.Err() != nil {
			return nil, &failure{err: errors.New("interrupted")}
		}
		return nil, g.redisError("ping Redis", err)
	}
	return b, nil
}

// retryRedis runs fn until it succeeds, fails with an error that is not
// transient, or ctx ends, waiting between attempts (see redisWait).
func retryRedis(ctx context.Context, g *globals, who string, fn func() error) error {
	w := newRedisWait(g, who)
	for {
		err := fn()
		if err == nil {
			w.ok()
			return nil
		}
		if !bus.IsTransient(err) || !w.wait(ctx, err) {
			return err
		}
	}
}

// redisWait is the backoff of a command waiting for Redis: 50 ms doubling
// to 1 s, ±20% jitter. It reports the outage once on stderr and the
// recovery once.
type redisWait struct {
	g       *globals
	who     string
	backoff time.Duration
	since   time.Time // start of the outage; zero while Redis answers
}

func newRedisWait(g *globals, who string) *redisWait { return &redisWait{g: g, who: who} }

// wait sleeps before the next attempt after err; false when ctx ended.
func (w *redisWait) wait(ctx context.Context, err error) bool {
	if w.since.IsZero() {
		w.since = time.Now()
		w.backoff = 50 * time.Millisecond
		fmt.Fprintf(w.g.io.err, "eventbus %s: Redis at %s unreachable (%s); waiting for it\n",
			w.who, bus.RedactURL(w.g.redisURL()), w.g.redact(unreachableReason(err)))
	}
	d := w.backoff + time.Duration((rand.Float64()*0.4-0.2)*float64(w.backoff))
	w.backoff = min(2*w.backoff, time.Second)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// ok records that Redis answered.
func (w *redisWait) ok() {
	if !w.since.IsZero() {
		fmt.Fprintf(w.g.io.err, "eventbus %s: Redis answers again after %s\n", w.who, time.Since(w.since).Round(time.Millisecond))
		w.since = time.Time{}
	}
}
