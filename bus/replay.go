package bus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// ErrBeforeRetention is returned when a replay starts at a time older than
// the oldest entry a stream still holds and entries were trimmed from it:
// the events of that time are gone.
var ErrBeforeRetention = errors.New("eventbus: replay start is older than the stream's retained range")

// ErrNoGroup is returned by ResetGroup when the group exists on none of the
// streams asked for.
var ErrNoGroup = errors.New("eventbus: consumer group not found")

// ReplayFrom says where a replay starts: at a stream entry id (inclusive) or
// at a time (the first entry written at or after it). Set exactly one.
type ReplayFrom struct {
	// ID is a stream entry id such as "1700000000000-0"; the entry itself is
	// delivered again. "0" means every retained entry.
	ID string
	// Time is resolved per stream to the first entry at or after it (stream
	// ids are the Redis server's milliseconds at XADD).
	Time time.Time
}

func (f ReplayFrom) validate() error {
	switch {
	case f.ID == "" && f.Time.IsZero():
		return fmt.Errorf("%w: replay needs a start id or time", ErrInvalidConfig)
	case f.ID != "" && !f.Time.IsZero():
		return fmt.Errorf("%w: replay start: set only one of ID and Time", ErrInvalidConfig)
	case f.ID != "":
		if _, _, err := ParseStreamID(f.ID); err != nil {
			return fmt.Errorf("%w: replay start %q: %w", ErrInvalidConfig, f.ID, err)
		}
	}
	return nil
}

// GroupReset is what ResetGroup did (or, in a dry run, would do) on one stream.
type GroupReset struct {
	// Type is the event type of the stream.
	Type string
	// Stream is the stream key.
	Stream string
	// StartID is the first entry id that is delivered again.
	StartID string
	// Previous is the group's last-delivered id before the reset.
	Previous string
	// Redeliver is how many retained entries are at or after StartID.
	Redeliver int64
}

// ResetGroupOptions narrows ResetGroup.
type ResetGroupOptions struct {
	// Types, when set, resets the group on these event types' streams only;
	// by default on every registered type's stream where the group exists
	// (a pattern handler's group exists on many streams).
	Types []string
	// DryRun computes the resets without doing them.
	DryRun bool
}

// ResetGroup moves consumer group group (a router handler's group is
// "<service>.<handler>") back (or forward) to from on every stream where it
// exists, with XGROUP SETID, so that the group's consumers receive the
// entries from there on again. Its pending list is left as it is: entries
// already pending stay pending (and are claimed as usual). A time older than
// a trimmed stream's oldest entry fails with ErrBeforeRetention and resets
// nothing.
func (b *Bus) ResetGroup(ctx context.Context, group string, from ReplayFrom, opts ResetGroupOptions) ([]GroupReset, error) {
	if err := from.validate(); err != nil {
		return nil, err
	}
	types, err := b.replayTypes(ctx, opts.Types)
	if err != nil {
		return nil, err
	}
	var resets []GroupReset
	for _, t := range types {
		key := b.cfg.StreamKey(t)
		groups, err := b.client.XInfoGroups(ctx, key).Result()
		if err != nil {
			if IsNoSuchKey(err) {
				continue
			}
			return nil, fmt.Errorf("groups of %s: %w", key, err)
		}
		i := slices.IndexFunc(groups, func(g redis.XInfoGroup) bool { return g.Name == group })
		if i < 0 {
			continue
		}
		start, err := b.resolveStart(ctx, key, from)
		if err != nil {
			return nil, err
		}
		n, err := b.countRange(ctx, key, start, "+")
		if err != nil {
			return nil, err
		}
		resets = append(resets, GroupReset{Type: t, Stream: key, StartID: start, Previous: groups[i].LastDeliveredID, Redeliver: n})
	}
	if len(resets) == 0 {
		return nil, fmt.Errorf("%w: %q on %s", ErrNoGroup, group, describeTypes(opts.Types))
	}
	if opts.DryRun {
		return resets, nil
	}
	for _, r := range resets {
		if err := b.client.XGroupSetID(ctx, r.Stream, group, idBefore(r.StartID)).Err(); err != nil {
			return nil, fmt.Errorf("reset %s on %s: %w", group, r.Stream, err)
		}
	}
	return resets, nil
}

func describeTypes(types []string) string {
	if len(types) == 0 {
		return "any registered stream"
	}
	return strings.Join(types, ", ")
}

// replayTypes returns types, validated, or every registered type.
func (b *Bus) replayTypes(ctx context.Context, types []string) ([]string, error) {
	for _, t := range types {
		if err := ValidateType(t); err != nil {
			return nil, err
		}
	}
	if len(types) > 0 {
		return types, nil
	}
	all, err := b.client.SMembers(ctx, b.cfg.RegistryKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("read type registry: %w", err)
	}
	slices.Sort(all)
	return all, nil
}

// ResolveTime returns the id of the first entry of stream key written at or
// after t (or t's millisecond id when there is none yet). It fails with
// ErrBeforeRetention when t is before the oldest retained entry and the
// stream has lost entries to trimming or deletion.
func (b *Bus) ResolveTime(ctx context.Context, key string, t time.Time) (string, error) {
	return b.resolveStart(ctx, key, ReplayFrom{Time: t})
}

func (b *Bus) resolveStart(ctx context.Context, key string, from ReplayFrom) (string, error) {
	if from.ID != "" {
		return from.ID, nil
	}
	ms := from.Time.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	first, err := b.client.XRangeN(ctx, key, "-", "+", 1).Result()
	if err != nil {
		return "", fmt.Errorf("oldest entry of %s: %w", key, err)
	}
	if len(first) == 1 {
		fms, _, _ := ParseStreamID(first[0].ID)
		if uint64(ms) < fms {
			info, err := b.client.XInfoStream(ctx, key).Result()
			if err != nil {
				return "", fmt.Errorf("info of %s: %w", key, err)
			}
			if info.EntriesAdded > info.Length {
				return "", fmt.Errorf("%w: %s holds entries from %s on, %s asked for (%d entries trimmed or deleted)",
					ErrBeforeRetention, key, time.UnixMilli(int64(fms)).UTC().Format(time.RFC3339Nano),
					from.Time.UTC().Format(time.RFC3339Nano), info.EntriesAdded-info.Length)
			}
		}
	}
	return strconv.FormatInt(ms, 10) + "-0", nil
}

// countRange counts the entries of key from start to end (inclusive ids).
func (b *Bus) countRange(ctx context.Context, key, start, end string) (int64, error) {
	var n int64
	for {
		batch, err := b.client.XRangeN(ctx, key, start, end, 1000).Result()
		if err != nil {
			return 0, fmt.Errorf("count entries of %s: %w", key, err)
		}
		n += int64(len(batch))
		if len(batch) < 1000 {
			return n, nil
		}
		start = "(" + batch[len(batch)-1].ID
	}
}

// ParseStreamID splits a Redis Stream entry id, "<ms>-<seq>" or "<ms>"
// (sequence 0), into its milliseconds and sequence number. It is the one
// parser of entry ids in the module (the gateway's Last-Event-ID, the CLI's
// --from and dead-letter ids, replay starts).
func ParseStreamID(id string) (ms, seq uint64, err error) {
	a, c, found := strings.Cut(id, "-")
	ms, err = strconv.ParseUint(a, 10, 64)
	if err == nil && found {
		seq, err = strconv.ParseUint(c, 10, 64)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%q is not a stream entry id: want <milliseconds>-<sequence>, e.g. 1700000000000-0", id)
	}
	return ms, seq, nil
}

// idBefore returns the greatest id smaller than id ("0" for the first), the
// last-delivered id that makes a group read id next.
func idBefore(id string) string {
	ms, seq, _ := ParseStreamID(id)
	switch {
	case seq > 0:
		return fmt.Sprintf("%d-%d", ms, seq-1)
	case ms > 0:
		return fmt.Sprintf("%d-%d", ms-1, uint64(math.MaxUint64))
	default:
		return "0"
	}
}

// ReplayRange is the range ReplayInto replays.
type ReplayRange struct {
	// Types are the event types to replay. Required.
	Types []string
	// From is where the range starts (inclusive).
	From ReplayFrom
	// To, when set, ends the range: the last entry written at or before it.
	// Default: the entries present when the replay starts.
	To time.Time
}

// ReplayHandler handles one replayed message; an error stops the replay
// (the message was not acked, and the temporary group is removed anyway).
type ReplayHandler func(msg *message.Message) error

// ReplayInto delivers the events of r to handle, in stream order per type,
// through a temporary consumer group ("<prefix>$replay.<uuid>") created for
// the replay and destroyed afterwards, even when handle fails or ctx ends.
// The live groups of the streams are never touched: not their position, not
// their pending lists. It returns how many events handle accepted. Messages
// carry the same metadata as a subscriber's (MetaStreamID, MetaTopic).
func (b *Bus) ReplayInto(ctx context.Context, r ReplayRange, handle ReplayHandler) (int, error) {
	if len(r.Types) == 0 {
		return 0, fmt.Errorf("%w: ReplayRange.Types is required", ErrInvalidConfig)
	}
	if err := r.From.validate(); err != nil {
		return 0, err
	}
	types, err := b.replayTypes(ctx, r.Types)
	if err != nil {
		return 0, err
	}
	group := b.cfg.StreamPrefix + "$replay." + watermill.NewShortUUID()
	n := 0
	for _, t := range types {
		key := b.cfg.StreamKey(t)
		start, err := b.resolveStart(ctx, key, r.From)
		if err != nil {
			return n, err
		}
		last, err := b.client.XRevRangeN(ctx, key, "+", "-", 1).Result()
		if err != nil {
			return n, fmt.Errorf("newest entry of %s: %w", key, err)
		}
		if len(last) == 0 {
			continue // no stream, or an empty one: nothing to replay (and no stream made)
		}
		end := last[0].ID
		if !r.To.IsZero() {
			end = strconv.FormatInt(r.To.UnixMilli(), 10)
		}
		k, err := b.replayStream(ctx, t, key, group, start, end, handle)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (b *Bus) replayStream(ctx context.Context, typ, key, group, start, end string, handle ReplayHandler) (n int, err error) {
	if err := b.client.XGroupCreateMkStream(ctx, key, group, idBefore(start)).Err(); err != nil {
		return 0, fmt.Errorf("create replay group on %s: %w", key, err)
	}
	defer func() {
		// Destroy with a fresh context: a cancelled ctx must not leave it behind.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if derr := b.client.XGroupDestroy(dctx, key, group).Err(); derr != nil {
			err = errors.Join(err, fmt.Errorf("remove replay group %s from %s: %w", group, key, derr))
		}
	}()
	endMS, endSeq, _ := ParseStreamID(strings.TrimPrefix(end, "+"))
	if end == "+" {
		endMS, endSeq = math.MaxUint64, math.MaxUint64
	} else if !strings.Contains(end, "-") {
		endSeq = math.MaxUint64
	}
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		res, err := b.client.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: group, Consumer: "replay", Streams: []string{key, ">"}, Count: 100, Block: -1,
		}).Result()
		if errors.Is(err, redis.Nil) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read %s for replay: %w", key, err)
		}
		if len(res) == 0 || len(res[0].Messages) == 0 {
			return n, nil
		}
		for _, e := range res[0].Messages {
			ms, seq, _ := ParseStreamID(e.ID)
			if ms > endMS || (ms == endMS && seq > endSeq) {
				return n, nil
			}
			msg, err := Marshaller{}.Unmarshal(e.Values)
			if err != nil {
				return n, fmt.Errorf("decode %s %s: %w", key, e.ID, err)
			}
			msg.Metadata.Set(MetaStreamID, e.ID)
			msg.Metadata.Set(MetaTopic, typ)
			msg.SetContext(ctx)
			if err := handle(msg); err != nil {
				return n, fmt.Errorf("replay handler on %s %s: %w", key, e.ID, err)
			}
			n++
		}
	}
}
