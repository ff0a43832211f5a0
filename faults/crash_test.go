//go:build faults

package faults

import (
	"context"
	"fmt"
	"os"
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

// Environment of the child processes (see startChild and TestHelperProcess).
const (
	envHelper   = "FAULTS_HELPER" // which helper to run; unset in a normal run
	envURL      = "FAULTS_REDIS_URL"
	envPrefix   = "FAULTS_PREFIX"
	envGroup    = "FAULTS_GROUP"
	envConsumer = "FAULTS_CONSUMER"
	envTopic    = "FAULTS_TOPIC"
	envDefaults = "FAULTS_DEFAULTS" // "1": the child consumes with the default SubscriberConfig

	helperCrashConsumer = "crash-consumer"
	handledLine         = "HANDLED " // + event id + " " + stream id, one line per message
	readyLine           = "READY"
)

// TestHelperProcess is not a test: it is the child process the SIGKILL
// tests start with startChild (the test binary run again with -test.run)
// and kill; FAULTS_HELPER says which one it is. In a normal run it returns
// at once.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv(envHelper) {
	case "":
		return
	case helperCrashConsumer:
		os.Exit(crashConsumer())
	case helperDelayMover:
		os.Exit(delayMover())
	case helperRouterWorker:
		os.Exit(routerWorker())
	case helperPhotoWorker:
		os.Exit(photoWorker())
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", envHelper, os.Getenv(envHelper))
		os.Exit(2)
	}
}

// crashConsumer consumes as one consumer of a group, slowly (10 ms per
// message, batches of 50), printing a line per message before acking it,
// until it is killed (or 60 s pass).
func crashConsumer() int {
	b, err := bus.New(bus.Config{
		ServiceName:  "faults-child",
		RedisURL:     os.Getenv(envURL),
		StreamPrefix: os.Getenv(envPrefix),
	}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg := bus.SubscriberConfig{
		ConsumerGroup: os.Getenv(envGroup),
		Consumer:      os.Getenv(envConsumer),
		BatchSize:     50,
		BlockTime:     50 * time.Millisecond,
		ClaimInterval: -1,
		ClaimMinIdle:  time.Second,
	}
	if os.Getenv(envDefaults) == "1" {
		cfg = bus.SubscriberConfig{ConsumerGroup: cfg.ConsumerGroup, Consumer: cfg.Consumer}
	}
	sub, err := b.NewSubscriber(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, os.Getenv(envTopic))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	printReady()
	for msg := range ch {
		printHandled(msg.UUID, msg.Metadata.Get(bus.MetaStreamID))
		time.Sleep(10 * time.Millisecond)
		msg.Ack()
	}
	return 0
}

// TestConsumerCrash kills a consumer process with SIGKILL while it holds
// unacked entries; a surviving consumer of the same group must claim them
// (after ClaimMinIdle) so that every event is handled at least once.
func TestConsumerCrash(t *testing.T) {
	x := newRow(t, "consumer crash: SIGKILL of a consumer process mid-batch")
	client := redistest.Client(t)
	prefix := redistest.Prefix(t)
	const (
		topic = "fault.crash"
		group = "crash"
		n     = 400
	)
	b, key, tr := setup(t, client, prefix, topic, nil)

	// The group exists (from the first entry) before anything is published.
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

	// The child: the test binary, run as TestHelperProcess.
	childName := "child-" + watermill.NewShortUUID()[:8]
	c := startChild(t, helperCrashConsumer, prefix, tr.handle,
		envGroup+"="+group, envConsumer+"="+childName, envTopic+"="+topic)
	c.waitReady(30 * time.Second)
	// Let the child take its first batch, then start the survivor beside it.
	deadline := time.After(20 * time.Second)
	c.waitHandled(1, deadline)
	survivorCfg := bus.SubscriberConfig{
		ConsumerGroup: group,
		Consumer:      "survivor",
		BatchSize:     50,
		BlockTime:     50 * time.Millisecond,
		ClaimInterval: 200 * time.Millisecond,
		ClaimMinIdle:  time.Second,
		CloseTimeout:  2 * time.Second,
	}
	_, ch := subscribe(t, b, survivorCfg, topic)
	claimed := make(chan *message.Message, n)
	go func() {
		for msg := range ch {
			tr.handle(msg.UUID, msg.Metadata.Get(bus.MetaStreamID))
			if msg.Metadata.Get(bus.MetaDelivery) != "1" {
				claimed <- msg
			}
			time.Sleep(2 * time.Millisecond)
			msg.Ack()
		}
	}()

	// Kill the child mid-batch: it has handled some events and holds unacked ones.
	c.waitHandled(40, deadline)
	killAt := c.kill()
	orphans, err := client.XPendingExt(t.Context(), &redis.XPendingExtArgs{
		Stream: key, Group: group, Consumer: childName, Start: "-", End: "+", Count: 1000,
	}).Result()
	require.NoError(t, err)
	require.NotEmpty(t, orphans, "the child must die holding unacked entries (mid-batch)")
	t.Logf("child handled %d events, killed holding %d pending entries", c.count(), len(orphans))

	missing := tr.waitAllHandled(20 * time.Second)
	lost := tr.fill(x)
	assert.Empty(t, missing, "events never handled after the crash")

	// Every entry the dead consumer held was claimed and handled by the survivor.
	var recovery time.Duration
	tr.mu.Lock()
	for _, p := range orphans {
		at, ok := tr.byStream[p.ID]
		if !ok || !at.After(killAt) {
			// Handled by the child before it died (ack not yet flushed) and
			// redelivered: the redelivery is what matters; see below.
			continue
		}
		recovery = max(recovery, at.Sub(killAt))
	}
	tr.mu.Unlock()
	left, err := client.XPendingExt(t.Context(), &redis.XPendingExtArgs{
		Stream: key, Group: group, Consumer: childName, Start: "-", End: "+", Count: 1000,
	}).Result()
	require.NoError(t, err)
	assert.Empty(t, left, "entries still pending on the dead consumer")
	assert.Zero(t, waitNoPending(t, client, key, group, 5*time.Second), "entries left pending in the group")
	assert.GreaterOrEqual(t, len(claimed), len(orphans), "every orphan is redelivered (delivery count > 1)")
	assert.GreaterOrEqual(t, recovery, survivorCfg.ClaimMinIdle/2,
		"in-flight entries claimed long before ClaimMinIdle: the keepalive of the live child did not hold")

	x.Recovery = fmtDur(recovery)
	x.Notes = fmt.Sprintf("child handled %d then died holding %d pending; survivor claimed them (ClaimMinIdle 1s, ClaimInterval 200ms); recovery = kill → last orphan handled; duplicates = handled by the child, ack not yet flushed", c.count(), len(orphans))
	if len(lost) > 0 {
		t.Logf("lost: %v", lost[:min(10, len(lost))])
	}
}
