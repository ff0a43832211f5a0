package bus

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"
)

// Retention defaults (see Retention).
const (
	// DefaultKeepLen is the length the trimmer keeps a stream at when no
	// consumer group needs more.
	DefaultKeepLen = 100_000
	// DefaultTrimInterval is how often a bus's trimmer makes a retention pass.
	DefaultTrimInterval = 10 * time.Second
	// retentionCountLimit bounds the entries one pass reads from one stream
	// (server side) to count a group's true position or to find the trim
	// point; a stream needing more converges over the next passes.
	retentionCountLimit = 10_000
)

//go:embed lua/retention.lua
var retentionLua string

var retentionScript = redis.NewScript(retentionLua)

// LossKey is the hash that counts, per consumer group, the entries of type
// t's stream that were removed (by a Retention cap or anyone's XTRIM) before
// the group read them. It is hash-tagged to the stream key, so it lives in
// the stream's cluster slot, and it cannot collide with a stream key ('{' is
// not allowed in types or prefixes).
func (c Config) LossKey(t string) string { return "{" + c.StreamKey(t) + "}:lost" }

// Loss is the count of entries one consumer group lost on one stream: the
// entries removed before the group read them.
type Loss struct {
	// Type is the event type; Stream its stream key.
	Type   string `json:"type"`
	Stream string `json:"stream"`
	// Group is the consumer group.
	Group string `json:"group"`
	// Lost is the number of entries: in a Losses answer, the total counted
	// since the group was first seen; in a TrimResult, what this pass found.
	Lost int64 `json:"lost"`
	// Total is the group's total on the stream after this pass (TrimResult
	// only; equal to Lost in a Losses answer).
	Total int64 `json:"total"`
}

// TrimResult is what one retention pass did on one stream.
type TrimResult struct {
	// Type is the event type; Stream its stream key.
	Type   string
	Stream string
	// Trimmed is how many entries the pass removed (none a group needed).
	Trimmed int64
	// Losses are the groups found to have lost entries since the previous
	// pass (removed by a cap or anyone's XTRIM before they read them).
	Losses []Loss
}

// Trim makes one retention pass now over every stream in the type registry
// (which the discovery sweep keeps complete, see Config.DiscoveryInterval),
// or over the streams of types if given. For each stream, atomically (one
// script, one slot):
//
//  1. It counts, per consumer group, the entries removed before the group
//     read them, adds them to the group's total in LossKey, logs one error
//     line per group with the numbers, and corrects the group's read
//     counter, so that XINFO GROUPS reports the true lag instead of a
//     phantom one that would never clear (Redis 7.0 keeps counting reads
//     from where the group was before the entries vanished).
//  2. It trims the stream to Retention.KeepLen (or KeepAge), but never past
//     the oldest entry a group still needs: its oldest pending entry, else
//     the entry after the last one delivered to it.
//
// The bus runs Trim every Retention.TrimInterval by itself (one bus per
// interval across all buses of the prefix); call it to make a pass now.
func (b *Bus) Trim(ctx context.Context, types ...string) ([]TrimResult, error) {
	if len(types) == 0 {
		all, err := b.client.SMembers(ctx, b.cfg.RegistryKey()).Result()
		if err != nil {
			return nil, fmt.Errorf("read type registry: %w", err)
		}
		types = all
	}
	slices.Sort(types)
	keepLen, keepMinID := int64(-1), ""
	switch {
	case b.cfg.Retention.KeepAge > 0:
		keepMinID = strconv.FormatInt(time.Now().Add(-b.cfg.Retention.KeepAge).UnixMilli(), 10)
	case b.cfg.Retention.KeepLen > 0:
		keepLen = b.cfg.Retention.KeepLen
	}
	var out []TrimResult
	var errs []error
	for _, t := range types {
		if ValidateType(t) != nil {
			continue
		}
		r, err := b.trimStream(ctx, t, keepLen, keepMinID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, l := range r.Losses {
			b.logger.Error("Entries were removed from a stream before a consumer group read them", ErrEntriesLost, watermill.LogFields{
				"stream": l.Stream, "group": l.Group, "lost": l.Lost, "total_lost": l.Total,
			})
		}
		if r.Trimmed > 0 || len(r.Losses) > 0 {
			out = append(out, r)
		}
	}
	return out, errors.Join(errs...)
}

// ErrEntriesLost is what the loss log line carries: entries were removed
// from a stream before a consumer group read them (see Bus.Trim).
var ErrEntriesLost = errors.New("eventbus: entries removed before their consumer group read them")

func (b *Bus) trimStream(ctx context.Context, t string, keepLen int64, keepMinID string) (TrimResult, error) {
	key := b.cfg.StreamKey(t)
	r := TrimResult{Type: t, Stream: key}
	res, err := retentionScript.Run(ctx, b.client, []string{key, b.cfg.LossKey(t)}, keepLen, keepMinID, retentionCountLimit, "").Slice()
	if err != nil {
		return r, fmt.Errorf("retention pass on %s: %w", key, err)
	}
	if len(res) == 0 || (len(res)-1)%3 != 0 {
		return r, fmt.Errorf("retention pass on %s: unexpected reply %v", key, res)
	}
	r.Trimmed, _ = res[0].(int64)
	for i := 1; i+2 < len(res); i += 3 {
		g, _ := res[i].(string)
		n, _ := res[i+1].(int64)
		total, _ := res[i+2].(int64)
		r.Losses = append(r.Losses, Loss{Type: t, Stream: key, Group: g, Lost: n, Total: total})
	}
	return r, nil
}

// baselineGroups sets the read counter of group on each stream of keys
// right after the subscriber created the group there (XINFO GROUPS shows no
// entries-read for a new group), so that entries trimmed from then on are
// counted as its loss. One pipeline for all of them: a pattern subscription
// creating 10,000 groups must not pay 10,000 round trips (it did, and
// Subscribe over 10,000 streams took 1.7 s instead of 33 ms). Best effort:
// a server without scripting or ENTRIESREAD (Redis < 7.0, miniredis) gets
// no baseline, and losses are then counted from the first retention pass.
func baselineGroups(ctx context.Context, client redis.UniversalClient, cfg Config, group string, keys []string) {
	type job struct{ keys []string }
	jobs := make([]job, 0, len(keys))
	for _, key := range keys {
		if t, ok := strings.CutPrefix(key, cfg.StreamPrefix); ok {
			jobs = append(jobs, job{[]string{key, cfg.LossKey(t)}})
		}
	}
	if len(jobs) == 0 {
		return
	}
	run := func(eval bool) (noScript bool) {
		pipe := client.Pipeline()
		cmds := make([]*redis.Cmd, len(jobs))
		for i, j := range jobs {
			if eval {
				cmds[i] = retentionScript.Eval(ctx, pipe, j.keys, -1, "", retentionCountLimit, group)
			} else {
				cmds[i] = retentionScript.EvalSha(ctx, pipe, j.keys, -1, "", retentionCountLimit, group)
			}
		}
		_, _ = pipe.Exec(ctx)
		for _, c := range cmds {
			if isNoScript(c.Err()) {
				return true
			}
		}
		return false
	}
	// A server that does not know the script yet (or lost it): once more
	// with EVAL, which also loads it.
	if run(false) {
		run(true)
	}
}

// Losses returns every consumer group's total of lost entries on the streams
// of types (by default every registered type), as counted by the retention
// passes: entries a cap or anyone's XTRIM removed before the group read them.
// Groups that lost nothing are not listed. One HGETALL per stream.
func (b *Bus) Losses(ctx context.Context, types ...string) ([]Loss, error) {
	if len(types) == 0 {
		all, err := b.client.SMembers(ctx, b.cfg.RegistryKey()).Result()
		if err != nil {
			return nil, fmt.Errorf("read type registry: %w", err)
		}
		types = all
	}
	slices.Sort(types)
	return ReadLosses(ctx, b.client, b.cfg, types)
}

// ReadLosses is Losses for a client and config without a Bus (the CLI's
// stats command uses it).
func ReadLosses(ctx context.Context, client redis.UniversalClient, cfg Config, types []string) ([]Loss, error) {
	pipe := client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, 0, len(types))
	var valid []string
	for _, t := range types {
		if ValidateType(t) != nil {
			continue
		}
		valid = append(valid, t)
		cmds = append(cmds, pipe.HGetAll(ctx, cfg.LossKey(t)))
	}
	if len(cmds) == 0 {
		return nil, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read loss counters: %w", err)
	}
	var out []Loss
	for i, t := range valid {
		m := cmds[i].Val()
		groups := make([]string, 0, len(m))
		for g := range m {
			groups = append(groups, g)
		}
		slices.Sort(groups)
		for _, g := range groups {
			n, err := strconv.ParseInt(m[g], 10, 64)
			if err != nil || n <= 0 {
				continue
			}
			out = append(out, Loss{Type: t, Stream: cfg.StreamKey(t), Group: g, Lost: n, Total: n})
		}
	}
	return out, nil
}

// periodic runs one of the bus's background jobs (the retention pass, the
// discovery sweep) every interval. Of all the buses of one prefix, the one
// that takes the interval's lease (SET NX PX) does the job, so the load on
// Redis does not grow with the number of buses.
type periodic struct {
	b      *Bus
	name   string // for logs: "Retention pass", "Discovery sweep"
	lease  string // lease key
	every  time.Duration
	job    func(context.Context) error
	cancel context.CancelFunc
	done   chan struct{}
	token  string

	mu      sync.Mutex
	lastErr string // the last error logged, so a lasting one is logged once
}

func startPeriodic(b *Bus, name, lease string, every time.Duration, job func(context.Context) error) *periodic {
	ctx, cancel := context.WithCancel(context.Background())
	p := &periodic{b: b, name: name, lease: lease, every: every, job: job, cancel: cancel, done: make(chan struct{}), token: watermill.NewShortUUID()}
	go p.run(ctx)
	return p
}

func (p *periodic) run(ctx context.Context) {
	defer close(p.done)
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pctx, cancel := context.WithTimeout(ctx, p.every)
		err := p.once(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		p.report(err)
	}
}

func (p *periodic) once(ctx context.Context) error {
	// The lease lasts a little less than the interval, so that the next
	// tick of any bus finds it expired.
	ok, err := p.b.client.SetNX(ctx, p.lease, p.token, p.every*9/10).Result()
	if err != nil || !ok {
		return err
	}
	return p.job(ctx)
}

// report logs a failed run as an error the first time, and again only when
// the error changes; a run that succeeds clears it.
func (p *periodic) report(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		p.lastErr = ""
		return
	}
	if err.Error() == p.lastErr {
		p.b.logger.Debug(p.name+" failed again", watermill.LogFields{"err": err.Error()})
		return
	}
	p.lastErr = err.Error()
	p.b.logger.Error(p.name+" failed; it is retried every interval", err, watermill.LogFields{"interval": p.every.String()})
}

func (p *periodic) stop() {
	p.cancel()
	<-p.done
}

func startTrimmer(b *Bus) *periodic {
	return startPeriodic(b, "Retention pass", b.cfg.StreamPrefix+"$retention", b.cfg.Retention.TrimInterval, func(ctx context.Context) error {
		_, err := b.Trim(ctx)
		return err
	})
}

//go:embed lua/pending_lost.lua
var pendingLostLua string

var pendingLostScript = redis.NewScript(pendingLostLua)

// dropGone is called before the subscription claims ids, pending in its
// group on stream (XCLAIM would drop them unseen, whatever its MinIdle): the
// ids whose entry is no longer in
// the stream (a cap, XTRIM or XDEL removed it after it was delivered and
// before it was acked) are acked and counted as lost for the group, in the
// same LossKey hash and with the same error line as Bus.Trim's losses (so
// /stats, `eventbus stats` and eventbus_handler_lost_total show them). One
// script, one slot: of several consumers claiming at once, exactly one
// counts an id. It returns the ids left to claim. On a script error every
// id is left (the claim goes on as before).
func (sub *subscription) dropGone(ctx context.Context, stream string, ids []string) []string {
	t, ok := strings.CutPrefix(stream, sub.s.bus.StreamPrefix)
	if !ok || len(ids) == 0 {
		return ids
	}
	group := sub.s.cfg.ConsumerGroup
	args := make([]any, 0, len(ids)+1)
	args = append(args, group)
	for _, id := range ids {
		args = append(args, id)
	}
	res, err := pendingLostScript.Run(ctx, sub.s.client, []string{stream, sub.s.bus.LossKey(t)}, args...).Slice()
	if err != nil || len(res) < 1 {
		if err != nil && ctx.Err() == nil {
			sub.s.logger.Error("Checking pending entries before a claim failed", err, watermill.LogFields{"stream": stream})
		}
		return ids
	}
	if len(res) == 1 {
		return ids
	}
	total, _ := res[0].(int64)
	gone := make(map[string]bool, len(res)-1)
	for _, v := range res[1:] {
		if id, ok := v.(string); ok {
			gone[id] = true
		}
	}
	sub.s.logger.Error("Pending entries were removed from a stream before their consumer group acked them", ErrEntriesLost, watermill.LogFields{
		"stream": stream, "group": group, "lost": len(gone), "total_lost": total, "pending": true,
	})
	left := ids[:0:0]
	for _, id := range ids {
		if !gone[id] {
			left = append(left, id)
		}
	}
	return left
}
