package bus

import (
	"context"
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"
)

// Dead-consumer detection. Every Subscriber (one consumer name) keeps a
// heartbeat key with a TTL, <prefix>$hb:<group>:<consumer>, refreshed every
// HeartbeatTTL/4, and records its name in the group's consumer set,
// <prefix>$consumers:<group>. Every HeartbeatTTL/4 each subscription looks
// for names of the set whose heartbeat is gone and claims their pending
// entries at once (whatever their idle time): a consumer killed with
// SIGKILL loses its entries to the others within about HeartbeatTTL plus
// that interval. A live consumer's heartbeat is there, so its entries are
// only ever claimed past ClaimMinIdle, which its keepalive never lets them
// reach. A name leaves the set once it holds nothing pending.
//
// The refresh is a PEXPIRE (SET only when the key is missing): PEXPIRE is
// allowed while Redis is out of memory, so an OOM does not make every live
// consumer look dead. Consumers without a heartbeat (older versions, other
// clients) are never in the set: they are claimed after ClaimMinIdle, as
// before.

// HeartbeatKey is the key whose presence says that consumer of group is
// alive. It cannot collide with a stream key ('$' is not allowed in types).
func (c Config) HeartbeatKey(group, consumer string) string {
	return c.StreamPrefix + "$hb:" + group + ":" + consumer
}

// ConsumersKey is the set of the consumer names of group that keep a
// heartbeat.
func (c Config) ConsumersKey(group string) string { return c.StreamPrefix + "$consumers:" + group }

// heartbeatEvery is how often the heartbeat is refreshed and dead consumers
// are looked for.
func (c SubscriberConfig) heartbeatEvery() time.Duration { return c.HeartbeatTTL / 4 }

// heartbeat runs until stop closes, then deletes the key, so that the
// group's other consumers take over at once what this one leaves pending.
func (s *Subscriber) heartbeat(stop <-chan struct{}) {
	ttl := s.cfg.HeartbeatTTL
	key := s.bus.HeartbeatKey(s.cfg.ConsumerGroup, s.cfg.Consumer)
	set := s.bus.ConsumersKey(s.cfg.ConsumerGroup)
	t := time.NewTicker(s.cfg.heartbeatEvery())
	defer t.Stop()
	registered := false
	beat := func() {
		ctx, cancel := context.WithTimeout(context.Background(), ttl)
		defer cancel()
		ok, err := s.client.PExpire(ctx, key, ttl).Result()
		if err == nil && !ok {
			err = s.client.Set(ctx, key, "1", ttl).Err()
		}
		if err == nil && !registered {
			if err = s.client.SAdd(ctx, set, s.cfg.Consumer).Err(); err == nil {
				registered = true
			}
		}
		if err != nil {
			s.logger.Error("Heartbeat failed; the group's other consumers may take this one's entries", err, nil)
		}
	}
	beat()
	for {
		select {
		case <-stop:
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = s.client.Del(ctx, key).Err()
			return
		case <-t.C:
			beat()
		}
	}
}

// claimDead claims the pending entries of the group's consumers whose
// heartbeat is gone, and drops from the consumer set those that hold
// nothing on this subscription's streams.
func (sub *subscription) claimDead(ctx context.Context) {
	cfg := sub.s.cfg
	b := sub.s.bus
	names, err := sub.s.client.SMembers(ctx, b.ConsumersKey(cfg.ConsumerGroup)).Result()
	if err != nil || len(names) <= 1 {
		return
	}
	pipe := sub.s.client.Pipeline()
	var others []string
	var exists []*redis.IntCmd
	for _, n := range names {
		if n == cfg.Consumer {
			continue
		}
		others = append(others, n)
		exists = append(exists, pipe.Exists(ctx, b.HeartbeatKey(cfg.ConsumerGroup, n)))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return
	}
	for i, n := range others {
		if exists[i].Val() != 0 {
			continue
		}
		if left := sub.claimFrom(ctx, n); left == 0 {
			// Nothing of it pending here. (Should another subscription of
			// the same Subscriber still find some on its own streams, those
			// are claimed after ClaimMinIdle, as any other idle entry.)
			_ = sub.s.client.SRem(ctx, b.ConsumersKey(cfg.ConsumerGroup), n).Err()
		}
	}
}

// claimFrom claims, on every stream of the subscription, up to the room
// left of the entries pending for consumer (dead), and returns how many it
// saw pending (0: it holds nothing here).
func (sub *subscription) claimFrom(ctx context.Context, consumer string) int {
	cfg := sub.s.cfg
	room := cfg.BatchSize - sub.inflightCount()
	if len(sub.streams) == 0 {
		return 0
	}
	count := int64(max(room, 1))
	pipe := sub.s.client.Pipeline()
	cmds := make([]*redis.XPendingExtCmd, len(sub.streams))
	for i, k := range sub.streams {
		cmds[i] = pipe.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: k, Group: cfg.ConsumerGroup, Start: "-", End: "+", Count: count, Consumer: consumer,
		})
	}
	_, _ = pipe.Exec(ctx)
	seen := 0
	for i, c := range cmds {
		pending, err := c.Result()
		if err != nil || len(pending) == 0 {
			continue
		}
		seen += len(pending)
		if room <= 0 {
			continue
		}
		ids := make([]string, 0, len(pending))
		counts := map[string]int64{}
		for _, p := range pending {
			if cfg.ShouldClaim != nil && !cfg.ShouldClaim(p) {
				continue
			}
			ids = append(ids, p.ID)
			counts[p.ID] = p.RetryCount
		}
		if ids = sub.dropGone(ctx, sub.streams[i], ids); len(ids) == 0 {
			continue
		}
		// MinIdle: two consumers that find the same dead one do not take
		// an entry from each other (the first claim resets its idle time);
		// the dead consumer's own entries are idle since its death, longer
		// than its heartbeat took to expire.
		msgs, err := sub.s.client.XClaim(ctx, &redis.XClaimArgs{
			Stream: sub.streams[i], Group: cfg.ConsumerGroup, Consumer: cfg.Consumer, Messages: ids, MinIdle: cfg.heartbeatEvery(),
		}).Result()
		if err != nil {
			sub.s.logger.Error("XCLAIM of a dead consumer's entries failed", err, watermill.LogFields{"stream": sub.streams[i], "dead_consumer": consumer})
			continue
		}
		ds := make([]delivery, 0, len(msgs))
		for _, m := range msgs {
			ds = append(ds, delivery{stream: sub.streams[i], entry: m, count: counts[m.ID] + 1})
		}
		if len(ds) > 0 {
			sub.s.logger.Info("Claimed the entries of a dead consumer (heartbeat gone)", watermill.LogFields{
				"stream": sub.streams[i], "dead_consumer": consumer, "entries": len(ds)})
		}
		room -= len(ds)
		if !sub.push(ds...) {
			return seen
		}
	}
	return seen
}
