package observe

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/middleware"
)

// Snapshot is the state of a router at one moment: what /stats serves.
type Snapshot struct {
	// Time is when the snapshot was taken.
	Time time.Time `json:"time"`
	// Service is the bus's service name.
	Service string `json:"service"`
	// UptimeSeconds is the time since observe.New.
	UptimeSeconds float64 `json:"uptimeSeconds"`
	// Topics counts the bus's publishes, by event type.
	Topics map[string]TopicStats `json:"topics"`
	// Handlers holds every handler the router has counters for (a removed
	// handler keeps its counters, without lag).
	Handlers map[string]HandlerSnapshot `json:"handlers"`
	// Window is the error rate over Config.ErrorWindow, all handlers summed.
	Window WindowStats `json:"window"`
	// DeadLetters is the length of the dead-letter stream (-1 when Redis
	// could not be read).
	DeadLetters int64 `json:"deadLetters"`
	// Redis is the reachability of the bus's Redis.
	Redis RedisCheck `json:"redis"`
}

// HandlerSnapshot is one handler's counters (middleware.HandlerStats, whose
// fields it inlines in JSON) with its consumer lag read from Redis.
type HandlerSnapshot struct {
	middleware.HandlerStats
	// Pattern is the event type or pattern the handler consumes ("" once
	// removed).
	Pattern string `json:"pattern,omitempty"`
	// ConsumerGroup is the handler's consumer group.
	ConsumerGroup string `json:"consumerGroup"`
	// Consuming reports whether the handler's subscription is open.
	Consuming bool `json:"consuming"`
	// Lag is the number of entries of the handler's streams not yet
	// delivered to its group, summed over its streams. Entries delivered but
	// not acked (read ahead, in flight, awaiting a retry) are Pending instead.
	Lag int64 `json:"lag"`
	// Pending is the number of entries delivered to the group and not acked.
	Pending int64 `json:"pending"`
	// LagKnown is false when Redis could not be read, or Redis could not
	// tell the lag of one of the streams (then Lag sums the others).
	LagKnown bool `json:"lagKnown"`
	// Lost is the number of entries of the handler's streams that were
	// removed (by a retention cap or anyone's XTRIM) before its group read
	// them, summed over its streams, as counted by the bus's retention
	// passes (bus.Bus.Trim). A total since the group was first seen.
	Lost int64 `json:"lost"`
	// Streams is the per-stream detail of Lag, Pending and Lost.
	Streams []StreamLag `json:"streams,omitempty"`
	// Window is the handler's error rate over Config.ErrorWindow.
	Window WindowStats `json:"window"`
}

// StreamLag is a consumer group's position on one stream.
type StreamLag struct {
	// Type is the event type; Stream its Redis key.
	Type   string `json:"type"`
	Stream string `json:"stream"`
	// Lag is the entries not yet delivered to the group, -1 when Redis
	// cannot tell (XINFO GROUPS answers a null lag, for instance after XDEL
	// inside the undelivered range).
	Lag int64 `json:"lag"`
	// Pending is the entries delivered and not yet acked.
	Pending int64 `json:"pending"`
	// Lost is the entries removed from the stream before the group read
	// them (see HandlerSnapshot.Lost).
	Lost int64 `json:"lost"`
	// GroupExists is false for a stream the group is not yet on (a pattern
	// subscription discovers new types within a moment): then Lag is the
	// stream's length, since the group will start at its first entry.
	GroupExists bool `json:"groupExists"`
}

// Stats returns a snapshot. The in-process part (counters, publishes, error
// window) is always filled in. Lag, pending and the dead-letter count are read
// from Redis within Config.RedisTimeout: when that fails, the returned error
// (free of credentials) says why, Snapshot.Redis is down, and those fields
// are unknown (LagKnown false, DeadLetters -1); the rest of the snapshot is
// still valid.
func (o *Observer) Stats(ctx context.Context) (Snapshot, error) {
	now := time.Now()
	stats := o.r.Stats()
	patterns := o.r.Handlers()
	consuming := o.r.Consuming()
	total, perWindow := o.window.compute(now, stats)
	snap := Snapshot{
		Time:          now.UTC(),
		Service:       o.bus.Config().ServiceName,
		UptimeSeconds: now.Sub(o.start).Seconds(),
		Topics:        o.bus.Publisher().Counts(),
		Handlers:      make(map[string]HandlerSnapshot, len(stats)+len(patterns)),
		Window:        total,
		DeadLetters:   -1,
	}
	for name, st := range stats {
		snap.Handlers[name] = HandlerSnapshot{HandlerStats: st, ConsumerGroup: o.r.ConsumerGroup(name), Window: perWindow[name]}
	}
	rs := o.readRedis(ctx, patterns)
	snap.Redis = rs.check
	if rs.err == nil {
		snap.DeadLetters = rs.deadLetters
	}
	for name, pattern := range patterns {
		h := snap.Handlers[name] // a handler not yet counted has zero counters
		h.Pattern, h.ConsumerGroup, h.Consuming = pattern, o.r.ConsumerGroup(name), consuming[name]
		if l, ok := rs.lags[name]; ok {
			h.Lag, h.Pending, h.LagKnown, h.Streams, h.Lost = l.lag, l.pending, l.known, l.streams, l.lost
		}
		snap.Handlers[name] = h
	}
	return snap, rs.err
}

type handlerLag struct {
	lag, pending, lost int64
	known              bool
	streams            []StreamLag
}

type redisState struct {
	check       RedisCheck
	deadLetters int64
	lags        map[string]handlerLag // only when err is nil
	err         error
}

// readRedis pings Redis and reads, in two pipelined round trips, the type
// registry and dead-letter length, then XINFO GROUPS, XLEN and the loss
// counters (bus.Config.LossKey, same slot) of every stream the handlers
// consume. Every command touches one key (Redis Cluster safe).
func (o *Observer) readRedis(ctx context.Context, handlers map[string]string) redisState {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.RedisTimeout)
	defer cancel()
	client := o.bus.Client()
	bc := o.bus.Config()
	var rs redisState

	start := time.Now()
	err := client.Ping(ctx).Err()
	rtt := time.Since(start)
	if err != nil {
		return o.redisDown(err, "PING")
	}
	rs.check = RedisCheck{Status: StatusOK, RTTMs: float64(rtt.Microseconds()) / 1000, rtt: rtt}

	// Round trip 1: the type registry (only for patterns) and the DLQ length.
	needRegistry := false
	for _, p := range handlers {
		needRegistry = needRegistry || bus.IsPattern(p)
	}
	pipe := client.Pipeline()
	dlq := pipe.XLen(ctx, bc.DeadLetterKey())
	var reg *redis.StringSliceCmd
	if needRegistry {
		reg = pipe.SMembers(ctx, bc.RegistryKey())
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return o.redisDown(err, "reading the dead-letter length and type registry")
	}
	rs.deadLetters = dlq.Val()
	var types []string
	if reg != nil {
		types = reg.Val()
	}

	// Which streams each handler consumes.
	streamsOf := make(map[string][]string, len(handlers)) // handler -> types
	unique := map[string]bool{}
	for name, p := range handlers {
		var ts []string
		if !bus.IsPattern(p) {
			ts = []string{p}
		} else {
			for _, t := range types {
				if bus.ValidateType(t) == nil && bus.Match(p, t) {
					ts = append(ts, t)
				}
			}
			sort.Strings(ts)
		}
		streamsOf[name] = ts
		for _, t := range ts {
			unique[t] = true
		}
	}

	// Round trip 2: XINFO GROUPS and XLEN per stream.
	type streamCmds struct {
		groups *redis.XInfoGroupsCmd
		length *redis.IntCmd
		lost   *redis.MapStringStringCmd
	}
	cmds := make(map[string]streamCmds, len(unique))
	if len(unique) > 0 {
		pipe = client.Pipeline()
		for _, t := range sortedKeys(unique) {
			key := bc.StreamKey(t)
			cmds[t] = streamCmds{groups: pipe.XInfoGroups(ctx, key), length: pipe.XLen(ctx, key), lost: pipe.HGetAll(ctx, bc.LossKey(t))}
		}
		_, _ = pipe.Exec(ctx) // per-command errors are read below
		if err := ctx.Err(); err != nil {
			return o.redisDown(err, "reading consumer groups")
		}
	}
	rs.lags = make(map[string]handlerLag, len(handlers))
	for name, ts := range streamsOf {
		group := o.r.ConsumerGroup(name)
		hl := handlerLag{known: true}
		for _, t := range ts {
			c := cmds[t]
			sl := StreamLag{Type: t, Stream: bc.StreamKey(t)}
			groups, gerr := c.groups.Result()
			length, lerr := c.length.Result()
			switch {
			case gerr != nil && bus.IsNoSuchKey(gerr):
				sl.GroupExists = false // no stream yet: nothing to lag behind
			case gerr != nil:
				return o.redisDown(gerr, "XINFO GROUPS "+sl.Stream)
			case lerr != nil:
				return o.redisDown(lerr, "XLEN "+sl.Stream)
			default:
				sl.Lag = length
				for _, g := range groups {
					if g.Name == group {
						sl.GroupExists, sl.Lag, sl.Pending = true, g.Lag, g.Pending
						break
					}
				}
			}
			if sl.Lag < 0 {
				hl.known = false
			} else {
				hl.lag += sl.Lag
			}
			if n, err := strconv.ParseInt(c.lost.Val()[group], 10, 64); err == nil {
				sl.Lost = n
			}
			hl.pending += sl.Pending
			hl.lost += sl.Lost
			hl.streams = append(hl.streams, sl)
		}
		rs.lags[name] = hl
	}
	return rs
}

func (o *Observer) redisDown(err error, what string) redisState {
	text := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		text = fmt.Sprintf("no answer within %s (%v)", o.cfg.RedisTimeout, err)
	}
	msg := o.redact(what + ": " + text)
	return redisState{
		check: RedisCheck{Status: StatusDown, Error: msg},
		err:   fmt.Errorf("redis: %s", msg),
	}
}
