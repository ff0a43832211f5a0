package bus

// Which streams a subscription reads: pattern matching against the
// registry, creating its groups, taking in new types, resyncs, and
// re-creating a group someone destroyed.

import (
	"context"
	"strings"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"
)

func (sub *subscription) matching(types []string) []string {
	var out []string
	for _, t := range types {
		if ValidateType(t) == nil && Match(sub.topic, t) && !sub.known[sub.s.bus.StreamKey(t)] {
			out = append(out, t)
		}
	}
	return out
}

// addStreams creates the group on each new stream (MKSTREAM, so a type not
// yet published can be subscribed) and adds it to the read set.
func (sub *subscription) addStreams(ctx context.Context, types []string, start string) error {
	if len(types) == 0 {
		return nil
	}
	pipe := sub.s.client.Pipeline()
	cmds := make([]*redis.StatusCmd, len(types))
	for i, t := range types {
		cmds[i] = pipe.XGroupCreateMkStream(ctx, sub.s.bus.StreamKey(t), sub.s.cfg.ConsumerGroup, start)
	}
	_, execErr := pipe.Exec(ctx)
	var created []string
	for i, t := range types {
		err := cmds[i].Err()
		if err == nil && execErr != nil && !isBusyGroup(execErr) {
			// No connection (say AUTH failed): go-redis sets no command's error.
			err = execErr
		}
		if err != nil && !isBusyGroup(err) {
			return err
		}
		key := sub.s.bus.StreamKey(t)
		if err == nil { // a new group: loss accounting starts now (retention.go)
			created = append(created, key)
		}
		if !sub.known[key] {
			sub.known[key] = true
			sub.streams = append(sub.streams, key)
		}
	}
	baselineGroups(ctx, sub.s.client, sub.s.bus, sub.s.cfg.ConsumerGroup, created)
	return nil
}

func isBusyGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP") }

func isNoGroup(err error) bool { return err != nil && strings.Contains(err.Error(), "NOGROUP") }

func (sub *subscription) drainNewTypes(ctx context.Context) {
	var types []string
	for {
		select {
		case t := <-sub.newTypes:
			types = append(types, t)
		default:
			sub.addNewTypes(ctx, types)
			return
		}
	}
}

func (sub *subscription) addNewTypes(ctx context.Context, types []string) {
	if m := sub.matching(types); len(m) > 0 {
		if err := sub.addStreams(ctx, m, "0"); err != nil {
			sub.s.logger.Error("Cannot add new streams; the resync will retry", err, watermill.LogFields{"topic": sub.topic})
		}
	}
}

func (sub *subscription) resync(ctx context.Context) {
	types, err := sub.s.client.SMembers(ctx, sub.s.bus.RegistryKey()).Result()
	if err != nil {
		sub.s.logger.Error("Registry resync failed", err, watermill.LogFields{"topic": sub.topic})
		return
	}
	sub.addNewTypes(ctx, types)
}

// recreateGroups re-creates the consumer group on every stream that lost it
// (XGROUP DESTROY, a stream deleted, Redis restarted without persistence).
// The group resumes where this subscription was, not at 0: after the newest
// entry it read from the stream, and the entries it still holds (in flight,
// or handled with their ack not yet written) are put back in the group's
// pending list as its own (XCLAIM … FORCE), so they are neither lost nor
// delivered again. A stream this subscription has read nothing from since
// it started gets the group at StartFrom ("0" by default: every retained
// entry is delivered again; docs/reliability.md). When another instance of
// the group re-creates it first, its position wins (BUSYGROUP here).
func (sub *subscription) recreateGroups(ctx context.Context) {
	cfg := sub.s.cfg
	held := sub.held.byStream()
	for _, k := range sub.streams {
		start, known := sub.lastRead[k]
		if !known {
			start = cfg.StartFrom
		}
		err := sub.s.client.XGroupCreateMkStream(ctx, k, cfg.ConsumerGroup, start).Err()
		switch {
		case isBusyGroup(err):
		case err != nil:
			sub.s.logger.Error("Cannot recreate consumer group", err, watermill.LogFields{"stream": k})
			continue
		default:
			sub.s.logger.Error("Consumer group was gone; re-created", nil, watermill.LogFields{
				"stream": k, "start_after": start, "position_known": known, "held_entries": len(held[k])})
			baselineGroups(ctx, sub.s.client, sub.s.bus, cfg.ConsumerGroup, []string{k})
		}
		if ids := held[k]; len(ids) > 0 {
			args := make([]any, 0, len(ids)+7)
			args = append(args, "XCLAIM", k, cfg.ConsumerGroup, cfg.Consumer, 0)
			for _, id := range ids {
				args = append(args, id)
			}
			args = append(args, "FORCE", "JUSTID")
			if err := sub.s.client.Do(ctx, args...).Err(); err != nil {
				sub.s.logger.Error("Cannot put the held entries back in the re-created group", err, watermill.LogFields{"stream": k})
			}
		}
	}
}
