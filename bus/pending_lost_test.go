package bus_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/logtest"
)

// Pending entries (delivered, not acked) whose stream entry a cap or an
// XTRIM removed are lost: when a consumer is about to claim them from a dead
// or idle consumer, they are counted in the group's loss total (the same
// LossKey as Bus.Trim's, so /stats, `eventbus stats` and the metric show
// them), with one error line, instead of vanishing from the PEL unseen
// (XCLAIM on Redis 7 drops them silently). Both claim paths: a consumer
// whose heartbeat is gone, and one idle past ClaimMinIdle.
func TestPendingEntriesTrimmedAreCountedAsLost(t *testing.T) {
	for _, tc := range []struct {
		name      string
		heartbeat bool // the ghost consumer is in the heartbeat set (dead), else only idle
		claimers  int  // live consumers claiming at once
	}{{"dead consumer (heartbeat gone)", true, 1}, {"idle past ClaimMinIdle", false, 1}, {"dead consumer, three claimers at once", true, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logtest.Recorder{}
			b0 := newTestBus(t, manualRetention(bus.Retention{}))
			cfg := b0.Config()
			cfg.Client = b0.Client()
			b, err := bus.New(cfg, logs)
			require.NoError(t, err)
			t.Cleanup(func() { _ = b.Close() })
			const typ, group, n, trimmed = "ret.pendgone", "pg", 10, 4
			cleanLossKey(t, b, typ)
			ctx := context.Background()
			c := b.Client()
			key := b.Config().StreamKey(typ)
			publishN(t, b.Publisher(), typ, n)

			// A ghost consumer reads all 10 and never acks.
			require.NoError(t, c.XGroupCreate(ctx, key, group, "0").Err())
			read, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "ghost", Streams: []string{key, ">"}, Count: n}).Result()
			require.NoError(t, err)
			require.Len(t, read[0].Messages, n)
			if tc.heartbeat {
				// Registered for heartbeats, and its heartbeat key is gone: dead.
				require.NoError(t, c.SAdd(ctx, b.Config().ConsumersKey(group), "ghost").Err())
			}
			// Someone's XTRIM removes the 4 oldest, pending, entries.
			require.NoError(t, c.XTrimMaxLen(ctx, key, n-trimmed).Err())
			var left []string
			for _, m := range read[0].Messages[trimmed:] {
				left = append(left, m.Values[bus.AttrID].(string))
			}

			all := make(chan *message.Message, n)
			for i := range tc.claimers {
				sc := fastSub(group)
				sc.Consumer = fmt.Sprintf("live-%d", i)
				if tc.heartbeat {
					sc.HeartbeatTTL, sc.ClaimMinIdle = 100*time.Millisecond, 10*time.Minute
				} else {
					sc.HeartbeatTTL, sc.ClaimInterval, sc.ClaimMinIdle = -1, 50*time.Millisecond, 200*time.Millisecond
				}
				s, err := b.NewSubscriber(sc)
				require.NoError(t, err)
				t.Cleanup(func() { _ = s.Close() })
				ch, err := s.Subscribe(ctxT(t), typ)
				require.NoError(t, err)
				go func() {
					for m := range ch {
						all <- m
					}
				}()
			}
			var got []string
			for _, m := range receive(t, all, n-trimmed, 10*time.Second) {
				got = append(got, m.UUID)
			}
			sort.Strings(got)
			sort.Strings(left)
			assert.Equal(t, left, got, "the retained pending entries are claimed and handled")

			require.Eventually(t, func() bool {
				p, err := c.XPending(ctx, key, group).Result()
				return err == nil && p.Count == 0
			}, 10*time.Second, 20*time.Millisecond, "entries left pending")
			assert.Equal(t, int64(trimmed), lossOf(t, b, typ, group), "lost = the pending entries trimmed, exactly")
			require.Equal(t, 1, logs.CountErrors("Pending entries were removed from a stream before their consumer group acked them"), "one error line: %v", logs.Errors())
			assert.Equal(t, 1, logs.CountErrors("lost:4"), "the line has the count: %v", logs.Errors())

			// A retention pass does not count them again.
			_, err = b.Trim(ctx, typ)
			require.NoError(t, err)
			assert.Equal(t, int64(trimmed), lossOf(t, b, typ, group))
		})
	}
}
