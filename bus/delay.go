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

	"github.com/ThreeDotsLabs/watermill/components/delay"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// Defaults for delayed delivery (Config.MaxDelay, Config.SchedulePollInterval).
const (
	DefaultMaxDelay             = 90 * 24 * time.Hour
	DefaultSchedulePollInterval = time.Second
	// moveBatch is how many due events one script call moves.
	moveBatch = 100
)

// MetaDeliverAt is the metadata key WithDeliverAt sets: the due time in Unix
// milliseconds. It is internal (never written to a stream).
const MetaDeliverAt = internalPrefix + "deliver_at"

// ExtDeliverAt is the CloudEvents extension attribute (an RFC 3339 time)
// with which an event sent to the gateway's ingress asks to be delivered
// later; the gateway turns it into WithDeliverAt.
const ExtDeliverAt = "deliverat"

// ErrDelayTooLong is returned when an event is to be delivered later than
// Config.MaxDelay from now.
var ErrDelayTooLong = errors.New("eventbus: delivery time is beyond the scheduling horizon")

// ErrNotScheduled is returned by CancelScheduled for an event that is not
// (or no longer) scheduled: unknown, cancelled, or already moved.
var ErrNotScheduled = errors.New("eventbus: event is not scheduled")

// WithDeliverAt delays the event: it is validated and stored when published,
// and written to its stream at t (within the movers' poll interval). A time
// not after now delivers at once. See docs/replay-and-delay.md.
func WithDeliverAt(t time.Time) Option {
	return setMeta(MetaDeliverAt, strconv.FormatInt(t.UnixMilli(), 10)) // reserved for WithAttribute
}

// WithDelay delays the event by d from the moment the option is applied.
func WithDelay(d time.Duration) Option { return WithDeliverAt(time.Now().Add(d)) }

//go:embed lua/move_due.lua
var moveDueLua string

var moveDueScript = redis.NewScript(moveDueLua)

// ScheduleKey is the sorted set that holds the delayed events of type t
// (member: event id, score: due Unix ms). Its hash tag is the stream key, so
// that the schedule, its data hash and the stream share one cluster slot and
// one script can move an event atomically.
func (c Config) ScheduleKey(t string) string { return "{" + c.StreamKey(t) + "}:scheduled" }

// scheduleDataKey holds the stream fields of each scheduled event.
func scheduleDataKey(scheduleKey string) string { return scheduleKey + ":data" }

// SchedulesKey is the set of every ScheduleKey that has held an event: the
// keys the movers poll.
func (c Config) SchedulesKey() string { return c.StreamPrefix + "$scheduled" }

// dueTime returns when msg is to be delivered, if it is delayed: by
// WithDeliverAt, or Watermill's components/delay metadata.
func dueTime(msg *message.Message) (time.Time, bool, error) {
	md := msg.Metadata
	var due time.Time
	if v := md.Get(MetaDeliverAt); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return due, false, fmt.Errorf("%w: %s %q is not Unix milliseconds", ErrInvalidAttribute, MetaDeliverAt, v)
		}
		due = time.UnixMilli(ms)
	}
	if v := md.Get(delay.DelayedUntilKey); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return due, false, fmt.Errorf("%w: %s %q is not RFC 3339", ErrInvalidAttribute, delay.DelayedUntilKey, v)
		}
		if due.IsZero() {
			due = t
		}
	} else if v := md.Get(delay.DelayedForKey); v != "" && due.IsZero() {
		d, err := time.ParseDuration(v)
		if err != nil {
			return due, false, fmt.Errorf("%w: %s %q is not a duration", ErrInvalidAttribute, delay.DelayedForKey, v)
		}
		due = time.Now().Add(d)
	}
	// Watermill's keys would be written as attributes; the due time is kept
	// under MetaDeliverAt (internal, never written) instead, so that a
	// publish that fails and is retried with the same message is still
	// delayed, to the same time.
	delete(md, delay.DelayedUntilKey)
	delete(md, delay.DelayedForKey)
	if !due.IsZero() {
		md[MetaDeliverAt] = strconv.FormatInt(due.UnixMilli(), 10)
	}
	return due, !due.IsZero(), nil
}

// splitDelayed takes the due times off msgs. It returns nil when none is
// delayed to the future (past times deliver now).
func (p *Publisher) splitDelayed(msgs []*message.Message) ([]time.Time, error) {
	var dues []time.Time
	now := time.Now()
	for i, msg := range msgs {
		if msg.Metadata == nil {
			continue
		}
		due, ok, err := dueTime(msg)
		if err != nil {
			return nil, fmt.Errorf("event %d of %d (id %s) not published, nothing written: %w", i+1, len(msgs), msg.UUID, err)
		}
		if !ok || !due.After(now) {
			continue
		}
		if p.cfg.MaxDelay > 0 && due.Sub(now) > p.cfg.MaxDelay {
			return nil, fmt.Errorf("event %d of %d (id %s) not published, nothing written: %w: %s is %s from now, the limit (Config.MaxDelay) is %s",
				i+1, len(msgs), msg.UUID, ErrDelayTooLong, due.UTC().Format(time.RFC3339), due.Sub(now).Round(time.Second), p.cfg.MaxDelay)
		}
		if dues == nil {
			dues = make([]time.Time, len(msgs))
		}
		dues[i] = due
	}
	return dues, nil
}

// schedule stores the delayed events (dues[i] non-zero) instead of writing
// them to the stream; fields are their prepared stream fields.
func (p *Publisher) schedule(ctx context.Context, topic string, fields [][]any, dues []time.Time, msgs []*message.Message) error {
	zkey := p.cfg.ScheduleKey(topic)
	if err := p.client.SAdd(ctx, p.cfg.SchedulesKey(), zkey).Err(); err != nil {
		return fmt.Errorf("schedule %s: %w", zkey, err)
	}
	_, err := p.client.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, due := range dues {
			if due.IsZero() {
				continue
			}
			pipe.HSet(ctx, scheduleDataKey(zkey), msgs[i].UUID, encodeFields(fields[i]))
			pipe.ZAdd(ctx, zkey, redis.Z{Score: float64(due.UnixMilli()), Member: msgs[i].UUID})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("schedule %d event(s) in %s: %w", len(msgs), zkey, err)
	}
	return nil
}

// encodeFields writes stream fields as netstrings ("<len>:<bytes>"), which
// the mover script splits back (binary-safe, no Lua library needed).
func encodeFields(fields []any) string {
	var b strings.Builder
	for _, f := range fields {
		var s string
		switch v := f.(type) {
		case string:
			s = v
		case []byte:
			s = string(v)
		default:
			s = fmt.Sprint(v)
		}
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	return b.String()
}

func decodeFields(enc string) (map[string]any, error) {
	var out []string
	for len(enc) > 0 {
		c := strings.IndexByte(enc, ':')
		if c < 0 {
			return nil, errors.New("bad scheduled entry encoding")
		}
		n, err := strconv.Atoi(enc[:c])
		if err != nil || c+1+n > len(enc) {
			return nil, errors.New("bad scheduled entry encoding")
		}
		out = append(out, enc[c+1:c+1+n])
		enc = enc[c+1+n:]
	}
	m := make(map[string]any, len(out)/2)
	for i := 0; i+1 < len(out); i += 2 {
		m[out[i]] = out[i+1]
	}
	return m, nil
}

// mover moves due events onto their streams, from every bus.
type mover struct {
	b       *Bus
	cancel  context.CancelFunc
	done    chan struct{}
	stopped sync.Once
}

func startMover(b *Bus) *mover {
	ctx, cancel := context.WithCancel(context.Background())
	m := &mover{b: b, cancel: cancel, done: make(chan struct{})}
	go m.run(ctx)
	return m
}

func (m *mover) stop() {
	m.stopped.Do(func() {
		m.cancel()
		<-m.done
	})
}

func (m *mover) run(ctx context.Context) {
	defer close(m.done)
	t := time.NewTicker(m.b.cfg.SchedulePollInterval)
	defer t.Stop()
	for {
		if _, err := m.b.MoveDue(ctx); err != nil && ctx.Err() == nil {
			m.b.logger.Error("move due scheduled events", err, nil)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// MoveDue moves every due scheduled event of the bus's prefix onto its
// stream now and returns how many it moved. The bus's mover calls it every
// Config.SchedulePollInterval; it is exported for tools and tests. Safe to
// run from any number of processes at once: each event is moved by one
// script call, once.
func (b *Bus) MoveDue(ctx context.Context) (int, error) {
	keys, err := b.client.SMembers(ctx, b.cfg.SchedulesKey()).Result()
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", b.cfg.SchedulesKey(), err)
	}
	total := 0
	var errs []error
	for _, zkey := range keys {
		n, err := b.moveDueKey(ctx, zkey)
		total += n
		if err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return total, errors.Join(errs...)
}

func (b *Bus) moveDueKey(ctx context.Context, zkey string) (int, error) {
	stream, ok := strings.CutPrefix(zkey, "{")
	stream, _, ok2 := strings.Cut(stream, "}")
	if !ok || !ok2 || !strings.HasPrefix(stream, b.cfg.StreamPrefix) {
		return 0, fmt.Errorf("%s holds %q, not a schedule key", b.cfg.SchedulesKey(), zkey)
	}
	topic := strings.TrimPrefix(stream, b.cfg.StreamPrefix)
	p := b.pub
	total := 0
	for ctx.Err() == nil {
		mode, val := "", ""
		switch {
		case b.cfg.Retention.MaxAge > 0:
			mode, val = "minid", strconv.FormatInt(time.Now().Add(-b.cfg.Retention.MaxAge).UnixMilli(), 10)
		case b.cfg.Retention.MaxLen > 0:
			mode, val = "maxlen", strconv.FormatInt(b.cfg.Retention.MaxLen, 10)
		}
		res, err := moveDueScript.Run(ctx, b.client, []string{zkey, scheduleDataKey(zkey), stream},
			moveBatch, mode, val, AttrRoom, AttrUser, AttrBroadcast).Slice()
		if err != nil {
			return total, fmt.Errorf("move due events of %s: %w", zkey, err)
		}
		n, _ := res[0].(int64)
		total += int(n)
		pushed, _ := res[1].([]any)
		// Second step, after the script (the push stream is in another
		// slot): the browser copy of addressed events, and the type registry.
		// A crash between the two loses the browser copy only.
		if len(pushed) > 0 || (n > 0 && !p.isKnown(topic)) {
			pipe := b.client.Pipeline()
			for _, e := range pushed {
				s, _ := e.(string)
				f, err := decodeFields(s)
				if err != nil {
					continue
				}
				pipe.XAdd(ctx, p.xaddArgs(b.cfg.PushKey(), flatten(f)))
			}
			if !p.isKnown(topic) {
				pipe.SAdd(ctx, b.cfg.RegistryKey(), topic)
				pipe.Publish(ctx, b.cfg.RegistryKey(), topic)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return total, fmt.Errorf("push copy / registry after moving %s: %w", zkey, err)
			}
			p.known.Store(topic, struct{}{})
		}
		if n < moveBatch {
			return total, nil
		}
	}
	return total, ctx.Err()
}

func (p *Publisher) isKnown(topic string) bool { _, ok := p.known.Load(topic); return ok }

func flatten(m map[string]any) []any {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]any, 0, 2*len(m))
	for _, k := range keys {
		out = append(out, k, m[k])
	}
	return out
}

// ScheduledEvent is an event waiting to be delivered.
type ScheduledEvent struct {
	// ID is the event id; Type its type.
	ID, Type string
	// Due is when it is to be written to its stream.
	Due time.Time
	// Message is the event as it will be written (attributes and data).
	Message *message.Message
}

// ListScheduled returns up to limit (0: all) scheduled events of type typ
// (every type if empty), soonest first per type.
func (b *Bus) ListScheduled(ctx context.Context, typ string, limit int) ([]ScheduledEvent, error) {
	keys, err := b.scheduleKeys(ctx, typ)
	if err != nil {
		return nil, err
	}
	var out []ScheduledEvent
	for _, zkey := range keys {
		stop := int64(-1)
		if limit > 0 {
			stop = int64(limit - len(out) - 1)
			if stop < 0 {
				break
			}
		}
		zs, err := b.client.ZRangeWithScores(ctx, zkey, 0, stop).Result()
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", zkey, err)
		}
		if len(zs) == 0 {
			continue
		}
		ids := make([]string, len(zs))
		for i, z := range zs {
			ids[i], _ = z.Member.(string)
		}
		encs, err := b.client.HMGet(ctx, scheduleDataKey(zkey), ids...).Result()
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", zkey, err)
		}
		t := strings.TrimPrefix(strings.TrimSuffix(strings.TrimPrefix(zkey, "{"), "}:scheduled"), b.cfg.StreamPrefix)
		for i, z := range zs {
			ev := ScheduledEvent{ID: ids[i], Type: t, Due: time.UnixMilli(int64(z.Score))}
			if s, ok := encs[i].(string); ok {
				if f, err := decodeFields(s); err == nil {
					ev.Message, _ = Marshaller{}.Unmarshal(f)
				}
			}
			out = append(out, ev)
		}
	}
	return out, nil
}

// CancelScheduled removes a scheduled event before it is delivered. typ may
// be empty (every type is searched). It returns ErrNotScheduled if the event
// is not scheduled (any more).
func (b *Bus) CancelScheduled(ctx context.Context, typ, id string) error {
	keys, err := b.scheduleKeys(ctx, typ)
	if err != nil {
		return err
	}
	for _, zkey := range keys {
		var zrem *redis.IntCmd
		_, err := b.client.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			zrem = pipe.ZRem(ctx, zkey, id)
			pipe.HDel(ctx, scheduleDataKey(zkey), id)
			return nil
		})
		if err != nil {
			return fmt.Errorf("cancel %s in %s: %w", id, zkey, err)
		}
		if zrem.Val() == 1 {
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrNotScheduled, id)
}

func (b *Bus) scheduleKeys(ctx context.Context, typ string) ([]string, error) {
	if typ != "" {
		if err := ValidateType(typ); err != nil {
			return nil, err
		}
		return []string{b.cfg.ScheduleKey(typ)}, nil
	}
	keys, err := b.client.SMembers(ctx, b.cfg.SchedulesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", b.cfg.SchedulesKey(), err)
	}
	slices.Sort(keys)
	return keys, nil
}

// publishDelayed stores the events with a due time and writes the others
// (fields are every event's prepared stream fields).
func (p *Publisher) publishDelayed(topic string, msgs []*message.Message, fields [][]any, dues []time.Time) error {
	if err := p.schedule(msgs[0].Context(), topic, fields, dues, msgs); err != nil {
		return err
	}
	var now []*message.Message
	for i, due := range dues {
		if due.IsZero() {
			now = append(now, msgs[i])
		}
	}
	if len(now) == 0 {
		return nil
	}
	return p.publish(topic, now)
}
