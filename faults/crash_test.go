//go:build faults

package faults

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
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

// Environment of the child process started by TestConsumerCrash.
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

// TestHelperProcess is not a test: it is the consumer process that
// TestConsumerCrash starts (the test binary run again with -test.run) and
// kills. In a normal run it returns at once.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv(envHelper) {
	case "":
		return
	case helperCrashConsumer:
		os.Exit(crashConsumer())
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
	_, _ = os.Stdout.WriteString(readyLine + "\n")
	for msg := range ch {
		// One write per line: what was written before SIGKILL reaches the parent.
		_, _ = os.Stdout.WriteString(handledLine + msg.UUID + " " + msg.Metadata.Get(bus.MetaStreamID) + "\n")
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
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.timeout=90s")
	cmd.Env = append(os.Environ(),
		envHelper+"="+helperCrashConsumer, envURL+"="+redistest.URL(), envPrefix+"="+prefix,
		envGroup+"="+group, envConsumer+"="+childName, envTopic+"="+topic)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var waitOnce sync.Once
	wait := func() { waitOnce.Do(func() { _ = cmd.Wait() }) }
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by pid: the child only
		wait()
	})

	var (
		mu           sync.Mutex
		childHandled int
		ready        = make(chan struct{})
		progress     = make(chan struct{}, 1)
		readerDone   = make(chan struct{})
	)
	go func() {
		defer close(readerDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == readyLine:
				close(ready)
			case strings.HasPrefix(line, handledLine):
				f := strings.Fields(strings.TrimPrefix(line, handledLine))
				if len(f) == 2 {
					tr.handle(f[0], f[1])
					mu.Lock()
					childHandled++
					mu.Unlock()
					select {
					case progress <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	childCount := func() int { mu.Lock(); defer mu.Unlock(); return childHandled }

	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("child consumer not ready in 30 s; stderr:\n%s", stderr.String())
	}
	// Let the child take its first batch, then start the survivor beside it.
	deadline := time.After(20 * time.Second)
	for childCount() < 1 {
		select {
		case <-progress:
		case <-deadline:
			t.Fatalf("child handled nothing in 20 s; stderr:\n%s", stderr.String())
		}
	}
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
	for childCount() < 40 {
		select {
		case <-progress:
		case <-deadline:
			t.Fatalf("child handled %d events in 20 s, want 40", childCount())
		}
	}
	var orphans []redis.XPendingExt
	killAt := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	wait()
	<-readerDone
	orphans, err = client.XPendingExt(t.Context(), &redis.XPendingExtArgs{
		Stream: key, Group: group, Consumer: childName, Start: "-", End: "+", Count: 1000,
	}).Result()
	require.NoError(t, err)
	require.NotEmpty(t, orphans, "the child must die holding unacked entries (mid-batch)")
	t.Logf("child handled %d events, killed holding %d pending entries", childCount(), len(orphans))

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
	x.Notes = fmt.Sprintf("child handled %d then died holding %d pending; survivor claimed them (ClaimMinIdle 1s, ClaimInterval 200ms); recovery = kill → last orphan handled; duplicates = handled by the child, ack not yet flushed", childCount(), len(orphans))
	if len(lost) > 0 {
		t.Logf("lost: %v", lost[:min(10, len(lost))])
	}
}
