package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

// Retention: the reader-safe trim and the loss accounting (bus/retention.go),
// against the real Redis. Every bus here has TrimInterval -1 and
// DiscoveryInterval -1: the tests make the passes themselves (Bus.Trim).

func manualRetention(r bus.Retention) func(*bus.Config) {
	return func(c *bus.Config) {
		r.TrimInterval = -1
		c.Retention = r
		c.DiscoveryInterval = -1
	}
}

// cleanLossKey deletes the loss hash of typ at the end of the test (its key
// starts with '{', outside the test's prefix).
func cleanLossKey(t *testing.T, b *bus.Bus, typ string) {
	t.Cleanup(func() { _ = b.Client().Del(context.Background(), b.Config().LossKey(typ)).Err() })
}

// readAndAck subscribes group to typ, receives and acks n events, and closes
// the subscriber. With n 0 it only creates the group. The consumer name is
// the same each time, so what one call read ahead (delivered, not acked) the
// next takes back first.
func readAndAck(t *testing.T, b *bus.Bus, group, typ string, n int) {
	t.Helper()
	sc := fastSub(group)
	sc.Consumer = group + "-c"
	sc.ClaimInterval, sc.ClaimMinIdle = 50*time.Millisecond, 200*time.Millisecond // and anything else left idle
	s, err := b.NewSubscriber(sc)
	require.NoError(t, err)
	ch, err := s.Subscribe(ctxT(t), typ)
	require.NoError(t, err)
	receive(t, ch, n, 10*time.Second)
	require.NoError(t, s.Close())
}

func xlen(t *testing.T, b *bus.Bus, typ string) int64 {
	t.Helper()
	n, err := b.Client().XLen(context.Background(), b.Config().StreamKey(typ)).Result()
	require.NoError(t, err)
	return n
}

func lossOf(t *testing.T, b *bus.Bus, typ, group string) int64 {
	t.Helper()
	ls, err := b.Losses(context.Background(), typ)
	require.NoError(t, err)
	for _, l := range ls {
		if l.Group == group {
			return l.Lost
		}
	}
	return 0
}

func TestRetentionCapLossIsCountedExactly(t *testing.T) {
	logs := watermill.NewCaptureLogger() // read only between Trim calls: b2 logs nothing on its own
	b := newTestBus(t, manualRetention(bus.Retention{MaxLen: 10}))
	b2, err := bus.New(func() bus.Config { c := b.Config(); c.Client = b.Client(); return c }(), logs)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b2.Close() })
	const typ = "ret.cap"
	cleanLossKey(t, b, typ)
	ctx := context.Background()

	// The group reads and acks 5 events, then stops while 995 more are
	// published under a cap of ~10 entries.
	publishN(t, b.Publisher(), typ, 5)
	readAndAck(t, b, "slow", typ, 5)
	publishN(t, b.Publisher(), typ, 995)
	retained := xlen(t, b, typ)
	require.Less(t, retained, int64(995), "the cap trimmed nothing: the test proves nothing")
	wantLost := 995 - retained // unread and removed

	res, err := b2.Trim(ctx)
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Len(t, res[0].Losses, 1)
	assert.Equal(t, "slow", res[0].Losses[0].Group)
	assert.Equal(t, wantLost, res[0].Losses[0].Lost)
	assert.Equal(t, wantLost, lossOf(t, b, typ, "slow"))

	// One error line with the numbers.
	errs := logs.Captured()[watermill.ErrorLogLevel]
	require.Len(t, errs, 1, "one error line")
	assert.Equal(t, "Entries were removed from a stream before a consumer group read them", errs[0].Msg)
	assert.ErrorIs(t, errs[0].Err, bus.ErrEntriesLost)
	assert.Equal(t, wantLost, errs[0].Fields["lost"])
	assert.Equal(t, "slow", errs[0].Fields["group"])

	// The lag is true again (no phantom): every retained entry, nothing more.
	g := groupOn(t, b.Client(), b.Config().StreamKey(typ), "slow")
	assert.Equal(t, retained, g.Lag)

	// A second pass finds nothing new; the total stays.
	res, err = b2.Trim(ctx)
	require.NoError(t, err)
	assert.Empty(t, res)
	assert.Equal(t, wantLost, lossOf(t, b, typ, "slow"))

	// The group reads what is left; the lag clears.
	readAndAck(t, b, "slow", typ, int(retained))
	g = groupOn(t, b.Client(), b.Config().StreamKey(typ), "slow")
	assert.Equal(t, int64(0), g.Lag)
}

// A group that reads on past the trimmed range before any pass ran: Redis
// 7.0 counts its reads from where it was, and the pass must still find the
// exact loss and clear the phantom lag.
func TestRetentionLossCountedAfterGroupReadPastTheGap(t *testing.T) {
	b := newTestBus(t, manualRetention(bus.Retention{MaxLen: 10}))
	const typ = "ret.gap"
	cleanLossKey(t, b, typ)
	ctx := context.Background()
	key := b.Config().StreamKey(typ)

	readAndAck(t, b, "g", typ, 0) // the group exists before anything is published
	publishN(t, b.Publisher(), typ, 600)
	retained := xlen(t, b, typ)
	require.Less(t, retained, int64(600))
	readAndAck(t, b, "g", typ, int(retained))
	phantom := groupOn(t, b.Client(), key, "g").Lag
	require.Equal(t, 600-retained, phantom, "Redis 7.0 shows the trimmed entries as lag")

	res, err := b.Trim(ctx)
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Len(t, res[0].Losses, 1)
	assert.Equal(t, 600-retained, res[0].Losses[0].Lost)
	assert.Equal(t, int64(0), groupOn(t, b.Client(), key, "g").Lag, "the phantom lag is cleared")
}

func TestRetentionExternalXTrimIsCounted(t *testing.T) {
	b := newTestBus(t, manualRetention(bus.Retention{MaxLen: -1, KeepLen: -1}))
	const typ = "ret.xtrim"
	cleanLossKey(t, b, typ)
	ctx := context.Background()
	key := b.Config().StreamKey(typ)

	publishN(t, b.Publisher(), typ, 10)
	readAndAck(t, b, "a", typ, 10) // a read everything
	readAndAck(t, b, "b", typ, 3)  // b read 3
	publishN(t, b.Publisher(), typ, 10)
	// Someone trims the stream to its last 4 entries (exact).
	require.NoError(t, b.Client().XTrimMaxLen(ctx, key, 4).Err())

	res, err := b.Trim(ctx)
	require.NoError(t, err)
	require.Len(t, res, 1)
	losses := map[string]int64{}
	for _, l := range res[0].Losses {
		losses[l.Group] = l.Lost
	}
	assert.Equal(t, map[string]int64{"a": 6, "b": 6}, losses, "b had read ahead (delivered) all 10 entries: its unread are 11 to 16")
	assert.Equal(t, int64(4), groupOn(t, b.Client(), key, "a").Lag)
	assert.Equal(t, int64(4), groupOn(t, b.Client(), key, "b").Lag)
}

func TestRetentionSafeTrimNeverRemovesUnread(t *testing.T) {
	b := newTestBus(t, manualRetention(bus.Retention{MaxLen: -1, KeepLen: 10}))
	const typ = "ret.safe"
	cleanLossKey(t, b, typ)
	ctx := context.Background()
	key := b.Config().StreamKey(typ)

	readAndAck(t, b, "fast", typ, 0)
	readAndAck(t, b, "slow", typ, 0)
	publishN(t, b.Publisher(), typ, 300)
	readAndAck(t, b, "fast", typ, 300)
	readAndAck(t, b, "slow", typ, 50)

	res, err := b.Trim(ctx)
	require.NoError(t, err)
	require.Len(t, res, 1)
	assert.Equal(t, int64(50), res[0].Trimmed, "only what every group read")
	assert.Empty(t, res[0].Losses)
	assert.Equal(t, int64(250), xlen(t, b, typ))

	// slow reads on: the next pass trims to KeepLen, not below.
	readAndAck(t, b, "slow", typ, 250)
	res, err = b.Trim(ctx)
	require.NoError(t, err)
	require.Len(t, res, 1)
	assert.Equal(t, int64(240), res[0].Trimmed)
	assert.Equal(t, int64(10), xlen(t, b, typ))
	ls, err := b.Losses(ctx)
	require.NoError(t, err)
	assert.Empty(t, ls)
	assert.Equal(t, int64(0), groupOn(t, b.Client(), key, "slow").Lag)
}

func TestRetentionSafeTrimKeepsPendingEntries(t *testing.T) {
	b := newTestBus(t, manualRetention(bus.Retention{MaxLen: -1, KeepLen: 1}))
	const typ = "ret.pending"
	cleanLossKey(t, b, typ)
	ctx := context.Background()
	key := b.Config().StreamKey(typ)

	publishN(t, b.Publisher(), typ, 20)
	// The group takes 20 and acks all but the 8th: that one stays pending.
	sc := fastSub("p")
	sc.Concurrency = 20 // the held message must not stop the others
	s, err := b.NewSubscriber(sc)
	require.NoError(t, err)
	ch, err := s.Subscribe(ctxT(t), typ)
	require.NoError(t, err)
	var held *message.Message
	for i, m := range receiveNoAck(t, ch, 20) {
		if i == 7 {
			held = m
			continue
		}
		m.Ack()
	}
	require.Eventually(t, func() bool {
		p, err := b.Client().XPending(ctx, key, "p").Result()
		return err == nil && p.Count == 1
	}, 10*time.Second, 20*time.Millisecond)
	pend, err := b.Client().XPending(ctx, key, "p").Result()
	require.NoError(t, err)

	res, err := b.Trim(ctx)
	require.NoError(t, err)
	require.Len(t, res, 1)
	assert.Equal(t, int64(7), res[0].Trimmed, "the entries before the pending one")
	first, err := b.Client().XRangeN(ctx, key, "-", "+", 1).Result()
	require.NoError(t, err)
	assert.Equal(t, pend.Lower, first[0].ID, "the pending entry is kept")
	held.Ack()
	require.NoError(t, s.Close())
}

func TestRetentionKeepAgeRespectsReaders(t *testing.T) {
	b := newTestBus(t, manualRetention(bus.Retention{MaxLen: -1, KeepAge: time.Millisecond}))
	const typ = "ret.age"
	cleanLossKey(t, b, typ)
	ctx := context.Background()
	readAndAck(t, b, "g", typ, 0)
	publishN(t, b.Publisher(), typ, 30)
	readAndAck(t, b, "g", typ, 10)
	time.Sleep(5 * time.Millisecond) // every entry is older than KeepAge
	res, err := b.Trim(ctx)
	require.NoError(t, err)
	require.Len(t, res, 1)
	assert.Equal(t, int64(10), res[0].Trimmed)
	assert.Equal(t, int64(20), xlen(t, b, typ))
}

// The bus's own trimmer, not a manual pass: a loss appears in Losses by
// itself.
func TestRetentionTrimmerRunsByItself(t *testing.T) {
	b := newTestBus(t, func(c *bus.Config) {
		c.Retention = bus.Retention{MaxLen: 10, TrimInterval: 50 * time.Millisecond}
		c.DiscoveryInterval = -1
	})
	const typ = "ret.auto"
	cleanLossKey(t, b, typ)
	readAndAck(t, b, "g", typ, 0)
	publishN(t, b.Publisher(), typ, 400)
	want := 400 - xlen(t, b, typ)
	require.Eventually(t, func() bool { return lossOf(t, b, typ, "g") == want }, 10*time.Second, 20*time.Millisecond)
}

func TestRetentionConfigErrors(t *testing.T) {
	_, err := bus.New(bus.Config{ServiceName: "s", RedisURL: "redis://127.0.0.1:6379", Retention: bus.Retention{
		MaxLen: 10, KeepLen: 20, KeepAge: -time.Second, TrimInterval: -2,
	}, DiscoveryInterval: -3}, nil)
	require.ErrorIs(t, err, bus.ErrInvalidConfig)
	for _, want := range []string{"KeepLen 20 exceeds the cap Retention.MaxLen 10", "KeepAge -1s must not be negative", "TrimInterval -2ns", "DiscoveryInterval -3ns"} {
		assert.Contains(t, err.Error(), want)
	}
	// MaxLen below the default KeepLen: KeepLen follows it.
	b := newTestBus(t, manualRetention(bus.Retention{MaxLen: 50}))
	assert.Equal(t, int64(50), b.Config().Retention.KeepLen)
	b = newTestBus(t, manualRetention(bus.Retention{}))
	assert.Equal(t, int64(bus.DefaultKeepLen), b.Config().Retention.KeepLen)
	assert.Equal(t, int64(bus.DefaultMaxLen), b.Config().Retention.MaxLen)
}

// receiveNoAck reads n messages without acking them, or fails after 10 s.
func receiveNoAck(t *testing.T, ch <-chan *message.Message, n int) []*message.Message {
	t.Helper()
	var out []*message.Message
	deadline := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case m := <-ch:
			out = append(out, m)
		case <-deadline:
			t.Fatalf("received %d of %d messages", len(out), n)
		}
	}
	return out
}
