package bus_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

// publishIDs publishes n events of typ and returns their stream ids, read back
// from the stream.
func publishIDs(t *testing.T, b *bus.Bus, typ string, n int) []string {
	t.Helper()
	for i := range n {
		_, err := bus.Publish(ctxT(t), b.Publisher(), typ, map[string]int{"i": i})
		require.NoError(t, err)
	}
	es, err := b.Client().XRange(ctxT(t), b.Config().StreamKey(typ), "-", "+").Result()
	require.NoError(t, err)
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	return ids
}

func streamMS(t *testing.T, id string) int64 {
	ms, err := strconv.ParseInt(strings.SplitN(id, "-", 2)[0], 10, 64)
	require.NoError(t, err)
	return ms
}

func TestResetGroupByTimeRedeliversOnlyLaterEventsToThatGroupOnly(t *testing.T) {
	b := newTestBus(t)
	ctx := ctxT(t)
	// Two groups on the stream, both at its end.
	first := publishIDs(t, b, "replay.one", 5)
	// Let the clock move so that the second batch has later stream times.
	var second []string
	for {
		time.Sleep(5 * time.Millisecond)
		if time.Now().UnixMilli() > streamMS(t, first[len(first)-1]) {
			break
		}
	}
	all := publishIDs(t, b, "replay.one", 5)
	second = all[5:]
	key := b.Config().StreamKey("replay.one")
	for _, g := range []string{"svc.a", "svc.b"} {
		require.NoError(t, b.Client().XGroupCreate(ctx, key, g, "$").Err())
	}
	cut := time.UnixMilli(streamMS(t, second[0]))

	dry, err := b.ResetGroup(ctx, "svc.a", bus.ReplayFrom{Time: cut}, bus.ResetGroupOptions{DryRun: true})
	require.NoError(t, err)
	require.Len(t, dry, 1)
	assert.EqualValues(t, 5, dry[0].Redeliver)
	assert.Equal(t, all[len(all)-1], dry[0].Previous)

	// A dry run changed nothing.
	groups, err := b.Client().XInfoGroups(ctx, key).Result()
	require.NoError(t, err)
	for _, g := range groups {
		assert.Equal(t, all[len(all)-1], g.LastDeliveredID, g.Name)
	}

	_, err = b.ResetGroup(ctx, "svc.a", bus.ReplayFrom{Time: cut}, bus.ResetGroupOptions{})
	require.NoError(t, err)

	sa, err := b.NewSubscriber(fastSub("svc.a"))
	require.NoError(t, err)
	ch, err := sa.Subscribe(ctx, "replay.one")
	require.NoError(t, err)
	got := receive(t, ch, 5, 10*time.Second)
	var ids []string
	for _, m := range got {
		ids = append(ids, m.Metadata.Get(bus.MetaStreamID))
	}
	assert.Equal(t, second, ids, "exactly the events at or after the cut, in order")
	select {
	case m := <-ch:
		t.Fatalf("extra delivery %s", m.Metadata.Get(bus.MetaStreamID))
	case <-time.After(200 * time.Millisecond):
	}

	// The other group did not move.
	groups, err = b.Client().XInfoGroups(ctx, key).Result()
	require.NoError(t, err)
	for _, g := range groups {
		if g.Name == "svc.b" {
			assert.Equal(t, all[len(all)-1], g.LastDeliveredID)
			assert.Zero(t, g.Pending)
		}
	}
}

func TestResetGroupByIDAndErrors(t *testing.T) {
	b := newTestBus(t)
	ctx := ctxT(t)
	ids := publishIDs(t, b, "replay.two", 4)
	key := b.Config().StreamKey("replay.two")
	require.NoError(t, b.Client().XGroupCreate(ctx, key, "svc.h", "$").Err())

	rs, err := b.ResetGroup(ctx, "svc.h", bus.ReplayFrom{ID: ids[2]}, bus.ResetGroupOptions{Types: []string{"replay.two"}})
	require.NoError(t, err)
	require.Len(t, rs, 1)
	assert.EqualValues(t, 2, rs[0].Redeliver)
	n, err := b.Client().XReadGroup(ctx, &redis.XReadGroupArgs{Group: "svc.h", Consumer: "c", Streams: []string{key, ">"}, Block: -1}).Result()
	require.NoError(t, err)
	require.Len(t, n[0].Messages, 2)
	assert.Equal(t, ids[2], n[0].Messages[0].ID)

	_, err = b.ResetGroup(ctx, "svc.nope", bus.ReplayFrom{ID: "0"}, bus.ResetGroupOptions{})
	assert.ErrorIs(t, err, bus.ErrNoGroup)
	_, err = b.ResetGroup(ctx, "svc.h", bus.ReplayFrom{}, bus.ResetGroupOptions{})
	assert.ErrorIs(t, err, bus.ErrInvalidConfig)

	// Trim the stream: a time before its oldest entry is refused.
	require.NoError(t, b.Client().XTrimMaxLen(ctx, key, 1).Err())
	_, err = b.ResetGroup(ctx, "svc.h", bus.ReplayFrom{Time: time.Now().Add(-time.Hour)}, bus.ResetGroupOptions{})
	assert.ErrorIs(t, err, bus.ErrBeforeRetention)
}

func TestReplayIntoTempGroupLeavesLiveGroupUntouched(t *testing.T) {
	b := newTestBus(t)
	ctx := ctxT(t)
	ids := publishIDs(t, b, "replay.three", 10)
	key := b.Config().StreamKey("replay.three")
	// The live group has read 6 entries and acked 3: 3 pending.
	require.NoError(t, b.Client().XGroupCreate(ctx, key, "svc.live", "0").Err())
	res, err := b.Client().XReadGroup(ctx, &redis.XReadGroupArgs{Group: "svc.live", Consumer: "c", Streams: []string{key, ">"}, Count: 6, Block: -1}).Result()
	require.NoError(t, err)
	require.Len(t, res[0].Messages, 6)
	require.NoError(t, b.Client().XAck(ctx, key, "svc.live", ids[0], ids[1], ids[2]).Err())
	before := liveState(t, b, key, "svc.live")

	var got []string
	n, err := b.ReplayInto(ctx, bus.ReplayRange{
		Types: []string{"replay.three"}, From: bus.ReplayFrom{ID: ids[2]}, To: time.UnixMilli(streamMS(t, ids[7])),
	}, func(m *message.Message) error {
		got = append(got, m.Metadata.Get(bus.MetaStreamID))
		return nil
	})
	require.NoError(t, err)
	// To is a millisecond: entries of ids[7]'s millisecond after it count too.
	want := []string{}
	for _, id := range ids[2:] {
		if streamMS(t, id) <= streamMS(t, ids[7]) {
			want = append(want, id)
		}
	}
	assert.Equal(t, want, got)
	assert.Equal(t, len(want), n)

	assert.Equal(t, before, liveState(t, b, key, "svc.live"))
	groups, err := b.Client().XInfoGroups(ctx, key).Result()
	require.NoError(t, err)
	require.Len(t, groups, 1, "the temporary group is removed")

	// A type with no stream replays nothing and makes no stream.
	n, err = b.ReplayInto(ctx, bus.ReplayRange{Types: []string{"replay.none"}, From: bus.ReplayFrom{ID: "0"}},
		func(*message.Message) error { return nil })
	require.NoError(t, err)
	assert.Zero(t, n)
	ex, err := b.Client().Exists(ctx, b.Config().StreamKey("replay.none")).Result()
	require.NoError(t, err)
	assert.Zero(t, ex)
}

type liveGroup struct {
	Last    string
	Pending []string
}

func liveState(t *testing.T, b *bus.Bus, key, group string) liveGroup {
	t.Helper()
	groups, err := b.Client().XInfoGroups(ctxT(t), key).Result()
	require.NoError(t, err)
	var s liveGroup
	for _, g := range groups {
		if g.Name == group {
			s.Last = g.LastDeliveredID
		}
	}
	p, err := b.Client().XPendingExt(ctxT(t), &redis.XPendingExtArgs{Stream: key, Group: group, Start: "-", End: "+", Count: 100}).Result()
	require.NoError(t, err)
	for _, e := range p {
		s.Pending = append(s.Pending, e.ID+"/"+e.Consumer+"/"+strconv.FormatInt(e.RetryCount, 10))
	}
	return s
}
