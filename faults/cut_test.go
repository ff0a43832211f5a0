//go:build faults

package faults

import (
	"fmt"
	"strings"
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

// TestConnectionCutUnderLoad cuts every connection of the bus (publisher and
// subscriber share one client, through a fault proxy) three times, then
// stalls all traffic for 1 s, while events are published and consumed.
func TestConnectionCutUnderLoad(t *testing.T) {
	x := newRow(t, "connection cut ×3, then stall 1 s (fault proxy)")
	direct, proxy, proxied := viaProxy(t)
	logger := &logtest.Recorder{}
	const topic = "fault.cut"
	b, key, tr := setup(t, proxied, redistest.Prefix(t), topic, logger)
	cfg := loadConfig("cut")
	stopPublishing := startLoad(t, b, cfg, topic, tr)

	time.Sleep(time.Second)
	var cutRecovery time.Duration
	for range 3 {
		at := time.Now()
		proxy.CutAll()
		time.Sleep(600 * time.Millisecond)
		cutRecovery = max(cutRecovery, tr.firstHandledAfter(at))
	}
	proxy.SetStalled(true)
	time.Sleep(time.Second)
	resumeAt := time.Now()
	proxy.SetStalled(false)
	time.Sleep(2 * time.Second)
	stopPublishing()

	missing := tr.waitAllHandled(10 * time.Second)
	lost := tr.fill(x)
	assert.Empty(t, missing, "events acked to the publisher but never handled")
	stallRecovery := tr.firstHandledAfter(resumeAt)
	assert.GreaterOrEqual(t, stallRecovery, time.Duration(0), "nothing handled after the stall")
	pending := waitNoPending(t, direct, key, cfg.ConsumerGroup, 5*time.Second)
	assert.Zero(t, pending, "entries left pending in the group (%d read-error and %d ack-failure log lines)",
		logger.CountErrors("Read failed"), logger.CountErrors("Ack failed"))

	_, _, failedButHandled := tr.stats()
	tr.mu.Lock()
	failed := len(tr.failed)
	tr.mu.Unlock()
	x.Recovery = fmtDur(stallRecovery)
	x.Notes = fmt.Sprintf("%d Publish errors, of which %d were written anyway (the XADD held by the stalled proxy ran on resume) and handled; slowest first-event-after-cut %s; %d entries left pending; recovery = end of stall → first event handled; MaxRetries -1",
		failed, failedButHandled, fmtDur(cutRecovery), pending)
	if len(lost) > 0 {
		t.Logf("lost: %v", lost[:min(10, len(lost))])
	}
}

// TestLostReadReply loses the reply of an XREADGROUP that Redis has answered:
// the entries are in the group's pending list under the live consumer, which
// never got them. They must still be handled (at-least-once), by that
// consumer once they have been idle for ClaimMinIdle.
//
// How: the subscriber blocks in XREADGROUP (through the proxy); the proxy is
// stalled; events are published on a direct connection, so Redis answers the
// blocked read and the answer is held in the proxy; then every connection is
// cut, dropping the answer. The other events are read after the cut.
func TestLostReadReply(t *testing.T) {
	x := newRow(t, "connection cut while an XREADGROUP reply is in flight")
	direct, proxy, proxied := viaProxy(t)
	prefix := redistest.Prefix(t)
	const topic = "fault.lostreply"
	b, key, tr := setup(t, proxied, prefix, topic, nil)
	pubBus := newBus(t, direct, prefix, nil)

	cfg := bus.SubscriberConfig{
		ConsumerGroup: "lostreply",
		Consumer:      "live",
		BlockTime:     time.Second, // the read stays blocked long enough to stall the proxy meanwhile
		ClaimInterval: 200 * time.Millisecond,
		ClaimMinIdle:  time.Second,
		CloseTimeout:  2 * time.Second,
	}
	_, ch := subscribe(t, b, cfg, topic)
	go consume(ch, tr, 0)
	waitBlocked(t, direct, proxied.Options().ClientName, "xreadgroup")

	proxy.SetStalled(true)
	const n = 5
	for i := range n {
		msg := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"n":%d}`, i))
		err := pubBus.Publisher().Publish(topic, msg)
		tr.published(msg.UUID, err)
		require.NoError(t, err)
	}
	// Redis has answered the blocked read with the first entry (it serves a
	// blocked client right after the command that made its key ready): that
	// entry is pending on "live"; the answer is held in the stalled proxy.
	var inReply []redis.XPendingExt
	require.Eventually(t, func() bool {
		var err error
		inReply, err = direct.XPendingExt(t.Context(), &redis.XPendingExtArgs{
			Stream: key, Group: cfg.ConsumerGroup, Consumer: "live", Start: "-", End: "+", Count: n,
		}).Result()
		return err == nil && len(inReply) > 0
	}, 3*time.Second, 10*time.Millisecond, "the blocked XREADGROUP was not answered")
	cutAt := time.Now()
	proxy.CutAll()
	proxy.SetStalled(false)

	wait := cfg.ClaimMinIdle + 2*cfg.BlockTime + 2*time.Second // claims run between reads
	missing := tr.waitAllHandled(wait)
	lost := tr.fill(x)
	assert.Empty(t, missing, "entries delivered by Redis in a lost reply were never handled: they stay pending on the live consumer, which never claims its own entries")
	// Recovery: from the cut to the last entry of the lost reply handled.
	recovery := time.Duration(0)
	tr.mu.Lock()
	for _, p := range inReply {
		at, ok := tr.byStream[p.ID]
		if !ok {
			recovery = -1
			break
		}
		recovery = max(recovery, at.Sub(cutAt))
	}
	tr.mu.Unlock()
	x.Recovery = fmtDur(recovery)
	pending := waitNoPending(t, direct, key, cfg.ConsumerGroup, 2*time.Second)
	assert.Zero(t, pending, "entries left pending")
	x.Notes = fmt.Sprintf("%d entry in the lost reply (the other %d events were read after the cut); %d entries left pending; recovery = cut → lost entry handled (ClaimMinIdle 1s, BlockTime 1s)",
		len(inReply), n-len(inReply), pending)
	_ = lost
}

// TestFailedAckIsRetried makes the ack of a handled message fail (every
// connection cut, new ones refused for a moment). The entry must not stay
// pending forever: the ack must be retried once Redis is reachable again.
func TestFailedAckIsRetried(t *testing.T) {
	x := newRow(t, "XACK fails (connection cut, refused 300 ms)")
	direct, proxy, proxied := viaProxy(t)
	logger := &logtest.Recorder{}
	const topic = "fault.ack"
	b, key, tr := setup(t, proxied, redistest.Prefix(t), topic, logger)
	cfg := loadConfig("ack")
	cfg.ClaimInterval, cfg.ClaimMinIdle = 200*time.Millisecond, time.Second
	_, ch := subscribe(t, b, cfg, topic)
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"n":1}`))
	err := b.Publisher().Publish(topic, msg)
	tr.published(msg.UUID, err)
	require.NoError(t, err)

	var got *message.Message
	select {
	case got = <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no message in 5 s")
	}
	tr.handle(got.UUID, got.Metadata.Get(bus.MetaStreamID))
	proxy.SetRefusing(true)
	proxy.CutAll()
	got.Ack()
	require.Eventually(t, func() bool { return logger.CountErrors("Ack failed") > 0 }, 3*time.Second, 10*time.Millisecond,
		"the ack never failed; the test did not set up its fault")
	time.Sleep(300 * time.Millisecond)
	proxy.SetRefusing(false)
	go consume(ch, tr, 0) // a redelivery, if any, is handled and counted

	pending := waitNoPending(t, direct, key, cfg.ConsumerGroup, cfg.ClaimMinIdle+3*time.Second)
	tr.fill(x)
	assert.Zero(t, pending, "the entry stays pending forever: a failed XACK is dropped, never retried, and the consumer never claims its own entries")
	x.Notes = fmt.Sprintf("%d entry left pending %s after Redis came back", pending, fmtDur(cfg.ClaimMinIdle+3*time.Second))
}

// waitBlocked waits until a connection named name is blocked in cmd (CLIENT LIST).
func waitBlocked(t *testing.T, c redis.UniversalClient, name, cmd string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := c.ClientList(t.Context()).Result()
		require.NoError(t, err)
		for line := range strings.SplitSeq(list, "\n") {
			if strings.Contains(line, " name="+name+" ") && strings.Contains(line, " cmd="+cmd+" ") && strings.Contains(line, " flags=b ") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no client blocked in %s after 5 s", cmd)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
