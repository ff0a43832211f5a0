//go:build faults

package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/logtest"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// retentionBus is a bus whose trimmer runs every 100 ms.
func retentionBus(t *testing.T, r bus.Retention, logger watermill.LoggerAdapter) (*bus.Bus, redis.UniversalClient) {
	t.Helper()
	client := redistest.Client(t)
	r.TrimInterval = 100 * time.Millisecond
	b, err := bus.New(bus.Config{ServiceName: "faults", Client: client, StreamPrefix: redistest.Prefix(t), Retention: r, DiscoveryInterval: -1}, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b, client
}

// lagThenCatchUp creates the group, publishes n events while nobody reads
// them, lets the trimmer make several passes, then consumes everything that
// is left. It returns the stream length seen while the group lagged.
func lagThenCatchUp(t *testing.T, b *bus.Bus, topic string, n int, tr *tracker) (lengthWhileLagging int64) {
	t.Helper()
	ctx := context.Background()
	cfg := loadConfig("lagging")
	cfg.Consumer = "lagging-1"
	sub, _ := subscribe(t, b, cfg, topic)
	require.NoError(t, sub.Close()) // the group exists and reads nothing
	for i := range n {
		msg := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"n":%d}`, i))
		tr.published(msg.UUID, b.Publisher().Publish(topic, msg))
	}
	time.Sleep(500 * time.Millisecond) // about five trimmer passes while the group lags
	lengthWhileLagging, err := b.Client().XLen(ctx, b.Config().StreamKey(topic)).Result()
	require.NoError(t, err)
	_, ch := subscribe(t, b, cfg, topic)
	go consume(ch, tr, 0)
	return lengthWhileLagging
}

// TestTrimUnderLagSafePolicy: KeepLen 10, no cap reached. A group that lags
// 1,000 events behind loses none of them to trimming; once it has caught up,
// the stream is trimmed to KeepLen.
func TestTrimUnderLagSafePolicy(t *testing.T) {
	x := newRow(t, "trim under lag, safe policy (KeepLen 10, cap 1,000,000): group reads nothing while 1,000 are published")
	const topic = "fault.trim.safe"
	b, client := retentionBus(t, bus.Retention{KeepLen: 10}, nil)
	t.Cleanup(func() { _ = client.Del(context.Background(), b.Config().LossKey(topic)).Err() })
	tr := newTracker()
	lagging := lagThenCatchUp(t, b, topic, 1000, tr)
	missing := tr.waitAllHandled(20 * time.Second)
	lost := tr.fill(x)
	assert.Empty(t, missing)
	assert.Empty(t, lost)
	assert.Equal(t, int64(1000), lagging, "nothing unread was trimmed while the group lagged")
	key := b.Config().StreamKey(topic)
	waitNoPending(t, client, key, "lagging", 5*time.Second)
	var after int64
	require.Eventually(t, func() bool {
		after, _ = client.XLen(context.Background(), key).Result()
		return after == 10
	}, 10*time.Second, 50*time.Millisecond, "caught up, the stream is trimmed to KeepLen")
	losses, err := b.Losses(context.Background())
	require.NoError(t, err)
	assert.Empty(t, losses, "no loss counted")
	x.Notes = fmt.Sprintf("unread trimmed: 0 (Bus.Losses empty); stream length while lagging %d, after catch-up %d (KeepLen)", lagging, after)
}

// TestTrimCapForced: the hard cap MaxLen 50 is reached by a group that reads
// nothing while 1,000 events are published. What it never gets is exactly
// what the bus reports as lost, in Losses and in one error line.
func TestTrimCapForced(t *testing.T) {
	x := newRow(t, "trim under lag, cap forced (MaxLen 50 ~): group reads nothing while 1,000 are published")
	const topic = "fault.trim.cap"
	logger := &logtest.Recorder{}
	b, client := retentionBus(t, bus.Retention{MaxLen: 50, KeepLen: 10}, logger)
	t.Cleanup(func() { _ = client.Del(context.Background(), b.Config().LossKey(topic)).Err() })
	tr := newTracker()
	lagging := lagThenCatchUp(t, b, topic, 1000, tr)
	key := b.Config().StreamKey(topic)
	// Everything the cap left is handled; then the group has no pending.
	require.Eventually(t, func() bool {
		handled, _, _ := tr.stats()
		return int64(handled) >= lagging
	}, 20*time.Second, 20*time.Millisecond)
	waitNoPending(t, client, key, "lagging", 5*time.Second)
	lost := tr.fill(x)
	losses, err := b.Losses(context.Background())
	require.NoError(t, err)
	require.Len(t, losses, 1)
	assert.Equal(t, "lagging", losses[0].Group)
	assert.Equal(t, int64(len(lost)), losses[0].Lost, "reported = published and never handled, exactly")
	// One error line per retention pass that found new losses, each with the
	// numbers; the last one carries the total.
	lines := logger.CountErrors("Entries were removed from a stream before a consumer group read them")
	assert.Positive(t, lines)
	assert.Equal(t, len(logger.Errors()), lines, "no other error logged")
	if errs := logger.Errors(); len(errs) > 0 {
		assert.Contains(t, errs[len(errs)-1], fmt.Sprintf("total_lost:%d", losses[0].Lost))
	}
	g, err := client.XInfoGroups(context.Background(), key).Result()
	require.NoError(t, err)
	require.Len(t, g, 1)
	assert.Equal(t, int64(0), g[0].Lag, "no phantom lag after catch-up")
	x.Notes = fmt.Sprintf("cap kept %d of 1,000; reported lost %d = never handled %d; %d error lines (one per pass that found a loss); lag after catch-up %d (no phantom)", lagging, losses[0].Lost, len(lost), lines, g[0].Lag)
}

// TestRawXAddDiscoveryTime: a stream created by a plain XADD (no registry
// SADD) is found by the discovery sweep; a pattern subscription whose own
// resync would never find it handles its event. Recovery = XADD → handled,
// bounded by DiscoveryInterval (1 s here) plus one read.
func TestRawXAddDiscoveryTime(t *testing.T) {
	x := newRow(t, "raw XADD of a new type (no registry SADD), DiscoveryInterval 1 s")
	client := redistest.Client(t)
	b, err := bus.New(bus.Config{ServiceName: "faults", Client: client, StreamPrefix: redistest.Prefix(t), DiscoveryInterval: time.Second}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	cfg := loadConfig("raw")
	cfg.ResyncInterval = time.Hour // the registry has no such type: only the sweep can find it
	_, ch := subscribe(t, b, cfg, "fault.raw.>")
	tr := newTracker()
	go consume(ch, tr, 0)

	const rounds = 3
	var worst time.Duration
	for i := range rounds {
		typ := fmt.Sprintf("fault.raw.t%d", i)
		id := watermill.NewUUID()
		at := time.Now()
		err := client.XAdd(context.Background(), &redis.XAddArgs{Stream: b.Config().StreamKey(typ), Values: []any{
			bus.AttrID, id, bus.AttrType, typ, bus.AttrSource, "by-hand", bus.AttrSpecVersion, bus.SpecVersion,
			bus.AttrDataContentType, "application/json", bus.FieldData, `{"hand":true}`,
		}}).Err()
		tr.published(id, err)
		require.Eventually(t, func() bool {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			return tr.handled[id] > 0
		}, 15*time.Second, 5*time.Millisecond, "raw stream %s never consumed", typ)
		worst = max(worst, time.Since(at))
	}
	lost := tr.fill(x)
	assert.Empty(t, lost)
	x.Recovery = fmtDur(worst)
	x.Notes = fmt.Sprintf("%d new raw streams, one after the other; recovery = worst XADD → handled (bound: DiscoveryInterval + one read)", rounds)
}
