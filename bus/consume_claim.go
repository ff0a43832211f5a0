package bus

// Claims: taking over idle entries and those of dead consumers.

import (
	"context"
	"errors"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"
)

// claim takes over entries that other consumers of the group left pending
// for longer than ClaimMinIdle (a crashed or stopped instance). With own set
// (once, when the subscription starts) it takes back instead what this
// consumer itself left pending: entries an earlier subscription read but
// never finished.
func (sub *subscription) claim(ctx context.Context, own bool) {
	cfg := sub.s.cfg
	minIdle := cfg.ClaimMinIdle
	consumer := ""
	if own {
		minIdle, consumer = 0, cfg.Consumer
	}
	room := cfg.BatchSize - sub.inflightCount()
	if room <= 0 || len(sub.streams) == 0 {
		return
	}
	pipe := sub.s.client.Pipeline()
	cmds := make([]*redis.XPendingExtCmd, len(sub.streams))
	for i, k := range sub.streams {
		cmds[i] = pipe.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: k, Group: cfg.ConsumerGroup, Idle: minIdle, Start: "-", End: "+", Count: int64(room), Consumer: consumer,
		})
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range cmds {
		pending, err := c.Result()
		if err != nil {
			if !errors.Is(err, redis.Nil) {
				sub.s.logger.Error("XPENDING failed", err, watermill.LogFields{"stream": sub.streams[i]})
			}
			continue
		}
		counts := map[string]int64{}
		var ids []string
		for _, p := range pending {
			switch {
			case own:
			case p.Consumer == cfg.Consumer:
				// Ours, idle for ClaimMinIdle, so no handler holds it (the
				// keepalive would have reset it): a read whose reply was
				// lost. Take it back unless this subscription holds it.
				if sub.holds(entryRef{sub.streams[i], p.ID}) {
					continue
				}
			case cfg.ShouldClaim != nil && !cfg.ShouldClaim(p):
				continue
			}
			ids = append(ids, p.ID)
			counts[p.ID] = p.RetryCount
		}
		if ids = sub.dropGone(ctx, sub.streams[i], ids); len(ids) == 0 {
			continue
		}
		msgs, err := sub.s.client.XClaim(ctx, &redis.XClaimArgs{
			Stream: sub.streams[i], Group: cfg.ConsumerGroup, Consumer: cfg.Consumer, MinIdle: minIdle, Messages: ids,
		}).Result()
		if err != nil {
			sub.s.logger.Error("XCLAIM failed", err, watermill.LogFields{"stream": sub.streams[i]})
			continue
		}
		ds := make([]delivery, 0, len(msgs))
		for _, m := range msgs {
			sub.s.logger.Info("Claimed a pending entry", sub.entryLogFields(sub.streams[i], m).Add(watermill.LogFields{"own": own}))
			ds = append(ds, delivery{stream: sub.streams[i], entry: m, count: counts[m.ID] + 1})
		}
		if !sub.push(ds...) {
			return
		}
	}
}
