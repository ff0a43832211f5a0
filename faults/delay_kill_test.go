//go:build faults

package faults

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// helperDelayMover is the child TestDelayMoverKilled starts: a bus whose only
// work is its mover.
const helperDelayMover = "delay-mover"

// delayMover is the child TestDelayMoverKilled starts (see
// TestHelperProcess) and kills with SIGKILL.
func delayMover() int {
	b, err := bus.New(bus.Config{
		ServiceName:          "faults-mover",
		RedisURL:             os.Getenv(envURL),
		StreamPrefix:         os.Getenv(envPrefix),
		SchedulePollInterval: time.Millisecond,
	}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	_ = b // the mover runs on its own goroutine until the process dies
	printReady()
	time.Sleep(60 * time.Second)
	return 0
}

// TestDelayMoverKilled kills a bus process with SIGKILL while its mover is
// moving due events onto their stream: every scheduled event must reach the
// stream exactly once, moved either by the killed bus before it died or by
// the next one (the move is one script call per batch, so a batch is moved
// entirely or not at all).
func TestDelayMoverKilled(t *testing.T) {
	x := newRow(t, "delayed delivery: SIGKILL of the bus whose mover is moving due events")
	client := redistest.Client(t)
	prefix := redistest.Prefix(t)
	const (
		topic = "fault.delay"
		n     = 5000
	)
	ctx := t.Context()
	// A bus without a mover schedules everything, due shortly.
	sched, err := bus.New(bus.Config{ServiceName: "faults", Client: client, StreamPrefix: prefix, SchedulePollInterval: -1}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sched.Close() })
	// Scheduled an hour ahead, so that however slow the publishing, nothing
	// is due before the mover process runs; then made due by rewriting the
	// schedule's scores (the sorted set's score is the due time in ms).
	ids := make(map[string]bool, n)
	for i := 0; i < n; i += 500 {
		msgs := make([]*message.Message, 500)
		for j := range msgs {
			m, err := bus.NewMessage(ctx, map[string]int{"n": i + j}, bus.WithDelay(time.Hour))
			require.NoError(t, err)
			msgs[j] = m
			ids[m.UUID] = true
		}
		require.NoError(t, sched.Publisher().Publish(topic, msgs...))
	}
	x.Published, x.Acked = n, n
	key := prefix + topic
	l, err := client.XLen(ctx, key).Result()
	require.NoError(t, err)
	require.Zero(t, l, "nothing is written before it is due")
	zkey := sched.Config().ScheduleKey(topic)
	members, err := client.ZRange(ctx, zkey, 0, -1).Result()
	require.NoError(t, err)
	require.Len(t, members, n, "schedule %s", zkey)
	dueMS := float64(time.Now().Add(500 * time.Millisecond).UnixMilli())
	zs := make([]redis.Z, len(members))
	for i, m := range members {
		zs[i] = redis.Z{Score: dueMS, Member: m}
	}
	require.NoError(t, client.ZAddXX(ctx, zkey, zs...).Err())

	c := startChild(t, helperDelayMover, prefix, nil)
	c.waitReady(30 * time.Second)

	// Kill it once it has moved something and before it has moved all.
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err = client.XLen(ctx, key).Result()
		require.NoError(t, err)
		if l > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Microsecond)
	}
	c.kill()
	movedByChild, err := client.XLen(ctx, key).Result()
	require.NoError(t, err)
	require.Positive(t, movedByChild, "the mover process moved nothing in 30 s; stderr:\n%s", c.stderr.String())
	left, err := sched.ListScheduled(ctx, topic, 0)
	require.NoError(t, err)
	t.Logf("killed after moving %d of %d; %d still scheduled", movedByChild, n, len(left))

	// The restart: another bus's mover takes what is left.
	t0 := time.Now()
	next, err := bus.New(bus.Config{ServiceName: "faults", Client: client, StreamPrefix: prefix, SchedulePollInterval: 10 * time.Millisecond}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = next.Close() })
	for {
		left, err = next.ListScheduled(ctx, topic, 0)
		require.NoError(t, err)
		if len(left) == 0 || time.Since(t0) > 30*time.Second {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.Empty(t, left, "the next mover left events scheduled")
	x.Recovery = fmtDur(time.Since(t0))

	// Exactly once each, by id and by entry count.
	entries, err := client.XRange(ctx, key, "-", "+").Result()
	require.NoError(t, err)
	seen := make(map[string]int, n)
	for _, e := range entries {
		id, _ := e.Values[bus.AttrID].(string)
		seen[id]++
	}
	for id, c := range seen {
		if c > 1 {
			x.Duplicated += c - 1
		}
		if ids[id] {
			x.Handled++
		}
	}
	for id := range ids {
		if seen[id] == 0 {
			x.Lost++
		}
	}
	x.Notes = fmt.Sprintf("%d moved by the killed mover, %d by the next; stream entries %d", movedByChild, int64(len(entries))-movedByChild, len(entries))
	assert.Len(t, entries, n, "stream entries")
	assert.Zero(t, x.Lost, "scheduled events lost")
	assert.Zero(t, x.Duplicated, "scheduled events moved twice")
}
