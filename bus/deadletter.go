package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// Fields the dead-letter stream adds to the event's own fields.
const (
	DLQFieldReason   = "dlq_reason"   // the error of the last attempt
	DLQFieldHandler  = "dlq_handler"  // the handler that gave up
	DLQFieldGroup    = "dlq_group"    // its consumer group
	DLQFieldTopic    = "dlq_topic"    // the event type (stream) it came from
	DLQFieldAttempts = "dlq_attempts" // attempts in the last delivery
	DLQFieldDelivery = "dlq_delivery" // Redis delivery count when it gave up
	DLQFieldTime     = "dlq_time"     // when it was dead-lettered (RFC 3339)
	DLQFieldStreamID = "dlq_stream_id"
	// DLQFieldLastReason is set when the reason kept in DLQFieldReason is
	// that of an earlier attempt to dead-letter the event, whose write
	// failed: the reason of the attempt that finally wrote it.
	DLQFieldLastReason = "dlq_last_reason"

	// AttrRedriveGroup marks an event put back on its stream by Redrive: only
	// the consumer group named here handles it; every other group acks it
	// without delivering, so a redrive never repeats work of the handlers
	// that had succeeded.
	AttrRedriveGroup = "redrivegroup"
)

// DeadLetter is one entry of the dead-letter stream.
type DeadLetter struct {
	ID     string // dead-letter stream entry id
	Reason string
	// LastReason is the reason of the attempt that wrote the dead letter,
	// when that is not Reason (an earlier attempt's write failed).
	LastReason string
	Handler    string
	Group      string
	Topic      string
	Attempts   int
	Delivery   int
	Time       time.Time
	// Fields are the event's own stream fields (attributes and data).
	Fields map[string]string
}

// DeadLetterInfo says why an event is dead-lettered.
type DeadLetterInfo struct {
	Reason   string
	Handler  string
	Group    string
	Attempts int
}

// DeadLetterQueue stores events that handlers gave up on, in one stream
// (Config.DeadLetterKey), and puts them back on their topic (Redrive).
type DeadLetterQueue struct {
	cfg    Config
	client redis.UniversalClient
	pub    *Publisher     // redrive publishes through it
	failed *failedReasons // shared by the bus's queues; nil: none kept
}

// DeadLetters returns the bus's dead-letter queue.
func (b *Bus) DeadLetters() *DeadLetterQueue {
	return &DeadLetterQueue{cfg: b.cfg, client: b.client, pub: b.pub, failed: b.dlqFailed}
}

// failedReasons remembers, per entry and consumer group, the reason of a
// dead-lettering whose write failed, so that when the event comes back
// (say past MaxDeliveries, because the dead-letter stream could not be
// written while Redis was out of memory) it is dead-lettered with its real
// reason, not "too many deliveries". It is bounded (maxFailedReasons; the
// oldest go first) and held in memory: a restart forgets it.
type failedReasons struct {
	mu    sync.Mutex
	m     map[string]string
	order []string
}

const maxFailedReasons = 10_000

func newFailedReasons() *failedReasons { return &failedReasons{m: map[string]string{}} }

func (f *failedReasons) remember(key, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[key]; ok {
		return // the first reason is the real one
	}
	if len(f.order) >= maxFailedReasons {
		delete(f.m, f.order[0])
		f.order = f.order[1:]
	}
	f.m[key] = reason
	f.order = append(f.order, key)
}

func (f *failedReasons) take(key string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.m[key]
	if ok {
		delete(f.m, key)
		f.order = slices.DeleteFunc(f.order, func(k string) bool { return k == key })
	}
	return r, ok
}

func (f *failedReasons) peek(key string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.m[key]
	return r, ok
}

// Add writes msg to the dead-letter stream with info. msg is a message as a
// subscriber delivered it (its MetaTopic, MetaStreamID and MetaDelivery are
// kept); a malformed message keeps its raw entry as data.
//
// A write that fails for a reason that may pass (IsTransient: Redis
// unreachable, out of memory, ...) is retried with backoff and jitter (50 ms
// doubling to 1 s) until ctx ends, so that a poison event is not redelivered
// in a tight loop meanwhile. When it still fails, its reason is remembered:
// the next Add of the same entry for the same group (its redelivery, maybe
// past MaxDeliveries) is written with that first reason, the later one in
// DLQFieldLastReason.
func (q *DeadLetterQueue) Add(ctx context.Context, msg *message.Message, info DeadLetterInfo) (string, error) {
	key := info.Group + "\x00" + msg.Metadata.Get(MetaTopic) + "\x00" + msg.Metadata.Get(MetaStreamID)
	if msg.Metadata.Get(MetaStreamID) == "" {
		key = ""
	}
	last := ""
	if q.failed != nil && key != "" {
		if first, ok := q.failed.peek(key); ok && first != info.Reason {
			last, info.Reason = info.Reason, first
		}
	}
	fields := make([]any, 0, 2*len(msg.Metadata)+18)
	for k, v := range msg.Metadata {
		if strings.HasPrefix(k, internalPrefix) || strings.HasPrefix(k, "dlq_") || k == AttrRedriveGroup || k == FieldData {
			continue
		}
		fields = append(fields, k, v)
	}
	if msg.Metadata.Get(AttrID) == "" {
		fields = append(fields, AttrID, msg.UUID)
	}
	fields = append(fields,
		FieldData, []byte(msg.Payload),
		DLQFieldReason, info.Reason,
		DLQFieldHandler, info.Handler,
		DLQFieldGroup, info.Group,
		DLQFieldTopic, msg.Metadata.Get(MetaTopic),
		DLQFieldAttempts, strconv.Itoa(info.Attempts),
		DLQFieldDelivery, msg.Metadata.Get(MetaDelivery),
		DLQFieldStreamID, msg.Metadata.Get(MetaStreamID),
		DLQFieldTime, time.Now().UTC().Format(time.RFC3339Nano),
	)
	if m, ok := IsMalformed(msg); ok {
		fields = append(fields, "dlq_malformed", m)
	}
	if last != "" {
		fields = append(fields, DLQFieldLastReason, last)
	}
	args := &redis.XAddArgs{Stream: q.cfg.DeadLetterKey(), Values: fields, Approx: true}
	if q.cfg.Retention.MaxLen > 0 {
		args.MaxLen = q.cfg.Retention.MaxLen
	}
	backoff := retryInitial
	for {
		id, err := q.client.XAdd(ctx, args).Result()
		if err == nil {
			if q.failed != nil && key != "" {
				q.failed.take(key)
			}
			return id, nil
		}
		if !IsTransient(err) || !sleepUntil(ctx, jitter(backoff)) {
			if q.failed != nil && key != "" {
				q.failed.remember(key, info.Reason)
			}
			return "", fmt.Errorf("dead-letter event %s: %w", msg.UUID, err)
		}
		backoff = nextBackoff(backoff)
	}
}

// sleepUntil waits d unless ctx ends first (false), or would end before d
// has passed (false at once: no point waiting for a retry that cannot run).
func sleepUntil(ctx context.Context, d time.Duration) bool {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// List returns up to count dead letters from the oldest (start "-") or after
// the entry id start (exclusive, as "(" + id).
func (q *DeadLetterQueue) List(ctx context.Context, start string, count int64) ([]DeadLetter, error) {
	if start == "" {
		start = "-"
	}
	entries, err := q.client.XRangeN(ctx, q.cfg.DeadLetterKey(), start, "+", count).Result()
	if err != nil {
		return nil, err
	}
	out := make([]DeadLetter, 0, len(entries))
	for _, e := range entries {
		out = append(out, toDeadLetter(e))
	}
	return out, nil
}

// ErrNotFound is returned for a dead letter that does not exist.
var ErrNotFound = errors.New("not found")

// Get returns one dead letter by its entry id.
func (q *DeadLetterQueue) Get(ctx context.Context, id string) (DeadLetter, error) {
	entries, err := q.client.XRangeN(ctx, q.cfg.DeadLetterKey(), id, id, 1).Result()
	if err != nil {
		return DeadLetter{}, err
	}
	if len(entries) == 0 {
		return DeadLetter{}, fmt.Errorf("dead letter %s: %w", id, ErrNotFound)
	}
	return toDeadLetter(entries[0]), nil
}

// Len returns the number of dead letters.
func (q *DeadLetterQueue) Len(ctx context.Context) (int64, error) {
	return q.client.XLen(ctx, q.cfg.DeadLetterKey()).Result()
}

// RedriveFilter selects dead letters to redrive. A zero filter selects all.
type RedriveFilter struct {
	IDs     []string // only these entries
	Type    string   // only events of this type
	Handler string   // only those this handler gave up on
}

func (f RedriveFilter) match(d DeadLetter) bool {
	if len(f.IDs) > 0 && !containsString(f.IDs, d.ID) {
		return false
	}
	return (f.Type == "" || f.Type == d.Topic) && (f.Handler == "" || f.Handler == d.Handler)
}

func containsString(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// Redrive puts the selected dead letters back on their topic, addressed to
// the consumer group that gave up on them only (AttrRedriveGroup), and
// removes them from the dead-letter stream. It returns how many it moved.
// Each is written before it is removed: a failure half way leaves at worst a
// dead letter that was also redriven (at least once, never lost).
func (q *DeadLetterQueue) Redrive(ctx context.Context, f RedriveFilter) (int, error) {
	moved := 0
	start := "-"
	for {
		batch, err := q.List(ctx, start, 100)
		if err != nil {
			return moved, err
		}
		if len(batch) == 0 {
			return moved, nil
		}
		for _, d := range batch {
			start = "(" + d.ID
			if !f.match(d) {
				continue
			}
			if ValidateType(d.Topic) != nil {
				continue // not an event stream (should not happen); leave it
			}
			var extra []any
			if d.Group != "" {
				extra = []any{AttrRedriveGroup, d.Group}
			}
			// Through the bus publisher's checks (schema included).
			if err := q.pub.republish(ctx, d.Topic, d.Fields, extra...); err != nil {
				return moved, fmt.Errorf("redrive %s to %s: %w", d.ID, d.Topic, err)
			}
			if err := q.client.XDel(ctx, q.cfg.DeadLetterKey(), d.ID).Err(); err != nil {
				return moved, fmt.Errorf("remove redriven dead letter %s: %w", d.ID, err)
			}
			moved++
		}
	}
}

// Purge deletes every dead letter and returns how many there were.
func (q *DeadLetterQueue) Purge(ctx context.Context) (int64, error) {
	n, err := q.client.XLen(ctx, q.cfg.DeadLetterKey()).Result()
	if err != nil {
		return 0, err
	}
	return n, q.client.Del(ctx, q.cfg.DeadLetterKey()).Err()
}

func toDeadLetter(e redis.XMessage) DeadLetter {
	d := DeadLetter{ID: e.ID, Fields: map[string]string{}}
	for k, v := range e.Values {
		s, _ := v.(string)
		switch k {
		case DLQFieldReason:
			d.Reason = s
		case DLQFieldHandler:
			d.Handler = s
		case DLQFieldGroup:
			d.Group = s
		case DLQFieldTopic:
			d.Topic = s
		case DLQFieldAttempts:
			d.Attempts, _ = strconv.Atoi(s)
		case DLQFieldDelivery:
			d.Delivery, _ = strconv.Atoi(s)
		case DLQFieldTime:
			d.Time, _ = time.Parse(time.RFC3339Nano, s)
		case DLQFieldLastReason:
			d.LastReason = s
		default:
			if !strings.HasPrefix(k, "dlq_") {
				d.Fields[k] = s
			}
		}
	}
	return d
}
