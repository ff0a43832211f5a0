//go:build faults

package faults

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// TestDeadConsumerRecoveryWithDefaults kills with SIGKILL a consumer process
// that runs with the default SubscriberConfig (BatchSize 100, HeartbeatTTL
// 2 s) while it holds a backlog. The survivor, also at defaults except
// ClaimMinIdle 10 minutes (so that only the dead consumer's missing
// heartbeat can explain a claim), must take over every entry the dead one
// held. Recovery = SIGKILL → the last orphan handled by the survivor.
func TestDeadConsumerRecoveryWithDefaults(t *testing.T) {
	x := newRow(t, "SIGKILL of a worker holding a backlog, default settings (heartbeat)")
	client := redistest.Client(t)
	prefix := redistest.Prefix(t)
	const (
		topic = "fault.dead"
		group = "dead"
		n     = 600
	)
	b, key, tr := setup(t, client, prefix, topic, nil)
	require.NoError(t, client.XGroupCreateMkStream(t.Context(), key, group, "0").Err())
	for i := 0; i < n; i += 50 {
		msgs := make([]*message.Message, 50)
		for j := range msgs {
			msgs[j] = message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"n":%d}`, i+j))
		}
		err := b.Publisher().Publish(topic, msgs...)
		for _, m := range msgs {
			tr.published(m.UUID, err)
		}
		require.NoError(t, err)
	}

	childName := "child-" + watermill.NewShortUUID()[:8]
	c := startChild(t, helperCrashConsumer, prefix, tr.handle,
		envGroup+"="+group, envConsumer+"="+childName, envTopic+"="+topic, envDefaults+"=1")
	c.waitReady(30 * time.Second)
	deadline := time.After(30 * time.Second)
	c.waitHandled(20, deadline)

	// The survivor, started beside the live child: it must not take the
	// child's entries while the child lives (heartbeat present).
	survivorCfg := bus.SubscriberConfig{ConsumerGroup: group, Consumer: "survivor", ClaimMinIdle: 10 * time.Minute, CloseTimeout: 2 * time.Second}
	_, ch := subscribe(t, b, survivorCfg, topic)
	var survivorRuns sync.Map // event id -> struct{}: handled by the survivor
	var fromChild struct {
		sync.Mutex
		n int
	}
	go func() {
		for msg := range ch {
			tr.handle(msg.UUID, msg.Metadata.Get(bus.MetaStreamID))
			survivorRuns.Store(msg.UUID, struct{}{})
			if msg.Metadata.Get(bus.MetaDelivery) != "1" {
				fromChild.Lock()
				fromChild.n++
				fromChild.Unlock()
			}
			time.Sleep(time.Millisecond)
			msg.Ack()
		}
	}()
	c.waitHandled(60, deadline)
	fromChild.Lock()
	claimedWhileAlive := fromChild.n
	fromChild.Unlock()

	killAt := c.kill()
	orphans, err := client.XPendingExt(t.Context(), &redis.XPendingExtArgs{
		Stream: key, Group: group, Consumer: childName, Start: "-", End: "+", Count: 1000,
	}).Result()
	require.NoError(t, err)
	require.NotEmpty(t, orphans, "the child must die holding unacked entries")

	missing := tr.waitAllHandled(30 * time.Second)
	lost := tr.fill(x)
	assert.Empty(t, missing, "events never handled after the crash")
	assert.Zero(t, claimedWhileAlive, "the survivor took entries of the live child")
	var recovery time.Duration
	tr.mu.Lock()
	for _, p := range orphans {
		if at, ok := tr.byStream[p.ID]; ok && at.After(killAt) {
			recovery = max(recovery, at.Sub(killAt))
		}
	}
	tr.mu.Unlock()
	left, err := client.XPendingExt(t.Context(), &redis.XPendingExtArgs{
		Stream: key, Group: group, Consumer: childName, Start: "-", End: "+", Count: 1000,
	}).Result()
	require.NoError(t, err)
	assert.Empty(t, left, "entries still pending on the dead consumer")
	assert.Zero(t, waitNoPending(t, client, key, group, 5*time.Second), "entries left pending in the group")
	// Duplicate handler runs: events the child ran (its line written, ack
	// not flushed before SIGKILL) that the survivor ran again.
	dupRuns := 0
	for id := range c.handledIDs() {
		if _, ok := survivorRuns.Load(id); ok {
			dupRuns++
		}
	}
	x.Recovery = fmtDur(recovery)
	x.Notes = fmt.Sprintf("defaults (BatchSize 100, HeartbeatTTL 2s); survivor ClaimMinIdle 10min, so only the heartbeat explains the claims; child died holding %d pending (read-ahead); %d handler runs repeated (run by the child, ack not flushed; no dedup option); 0 entries of the live child claimed", len(orphans), dupRuns)
	if len(lost) > 0 {
		t.Logf("lost: %v", lost[:min(10, len(lost))])
	}
}
