package typescript_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// A Go and a Node consumer in one group, each with the default heartbeat
// (bus.DefaultHeartbeatTTL, 2 s) and a ClaimMinIdle of 10 minutes, so that
// only a missing heartbeat can explain a claim: while one lives the other
// takes none of its entries; once it is killed (SIGKILL) the other claims
// them all.

const (
	heartbeatGroup = "workers"
	heartbeatType  = "job.run"
	heartbeatCount = 5
	// aliveWindow is how long the survivor runs beside the live holder
	// before the holder is killed: several heartbeat checks (every TTL/4).
	aliveWindow = 3 * time.Second
)

// started is a process whose stdout lines arrive on lines.
type started struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *strings.Builder
	once   sync.Once
	err    error
}

func start(t *testing.T, cmd *exec.Cmd) *started {
	t.Helper()
	s := &started{cmd: cmd, lines: make(chan string, 100), stderr: &strings.Builder{}}
	cmd.Stderr = s.stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { s.kill() })
	return s
}

// kill ends the process with SIGKILL (by its pid) and waits for it.
func (s *started) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.wait()
}

// wait waits for the process to end and returns how it ended.
func (s *started) wait() error {
	s.once.Do(func() { s.err = s.cmd.Wait() })
	return s.err
}

// line returns the next stdout line, failing after d.
func (s *started) line(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-s.lines:
		require.True(t, ok, "process ended; stderr:\n%s", s.stderr.String())
		return l
	case <-time.After(d):
		t.Fatalf("no line from the process in %s; stderr:\n%s", d, s.stderr.String())
		return ""
	}
}

func publishJobs(t *testing.T, b *bus.Bus) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	msgs := make([]*message.Message, heartbeatCount)
	for i := range msgs {
		msgs[i] = message.NewMessage("", fmt.Appendf(nil, `{"n":%d}`, i))
	}
	require.NoError(t, b.Publisher().Publish(heartbeatType, msgs...))
	for _, m := range msgs {
		ids[m.UUID] = true
	}
	return ids
}

func pendingOf(t *testing.T, b *bus.Bus, consumer string) int {
	t.Helper()
	p, err := b.Client().XPendingExt(context.Background(), &redis.XPendingExtArgs{
		Stream: b.Config().StreamKey(heartbeatType), Group: heartbeatGroup, Start: "-", End: "+", Count: 100, Consumer: consumer,
	}).Result()
	require.NoError(t, err)
	return len(p)
}

func TestGoClaimsFromKilledNodeConsumer(t *testing.T) {
	b, prefix := newBus(t)
	ids := publishJobs(t, b)
	cmd := exec.Command("node", "test/interop/hold.mjs")
	cmd.Env = append(os.Environ(), "REDIS_URL="+redistest.URL(), "PREFIX="+prefix, "GROUP="+heartbeatGroup, "CONSUMER=node-1", "TYPE="+heartbeatType)
	holder := start(t, cmd)
	// Its first handler never ends; the batch it read holds the rest.
	require.True(t, strings.HasPrefix(holder.line(t, 30*time.Second), "held "))
	require.Eventually(t, func() bool { return pendingOf(t, b, "node-1") == heartbeatCount }, 20*time.Second, 20*time.Millisecond,
		"the Node consumer reads the whole stream in one batch")

	sub, err := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: heartbeatGroup, Consumer: "go-1", ClaimMinIdle: 10 * time.Minute})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	msgs, err := sub.Subscribe(ctx, heartbeatType)
	require.NoError(t, err)
	select {
	case m := <-msgs:
		t.Fatalf("the Go consumer took %s from the live Node consumer", m.UUID)
	case <-time.After(aliveWindow):
	}
	assert.Equal(t, heartbeatCount, pendingOf(t, b, "node-1"), "the live Node consumer keeps its entries")

	holder.kill()
	for len(ids) > 0 {
		select {
		case m := <-msgs:
			assert.True(t, ids[m.UUID], "unexpected event %s", m.UUID)
			assert.Equal(t, "2", m.Metadata.Get(bus.MetaDelivery), "claimed from the Node consumer, its second delivery")
			delete(ids, m.UUID)
			m.Ack()
		case <-ctx.Done():
			t.Fatalf("the Go consumer did not claim %d entries of the killed Node consumer", len(ids))
		}
	}
	require.Eventually(t, func() bool { return pendingOf(t, b, "node-1") == 0 && pendingOf(t, b, "go-1") == 0 },
		20*time.Second, 20*time.Millisecond, "entries left pending")
}

const envHeartbeatChild = "EVENTBUS_TS_HEARTBEAT_CHILD"

// TestHeartbeatChildProcess is the Go consumer that
// TestNodeClaimsFromKilledGoConsumer runs in a process of its own (this test
// binary again) and kills: it takes every entry of the stream and acks none.
// Run on its own (without the variable) it returns at once.
func TestHeartbeatChildProcess(t *testing.T) {
	if os.Getenv(envHeartbeatChild) == "" {
		return
	}
	b, err := bus.New(bus.Config{ServiceName: "go-child", RedisURL: redistest.URL(), StreamPrefix: os.Getenv("PREFIX")}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	sub, err := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: heartbeatGroup, Consumer: "go-child", ClaimMinIdle: 10 * time.Minute})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	msgs, err := sub.Subscribe(ctx, heartbeatType)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	select {
	case m := <-msgs:
		fmt.Printf("holding %s\n", m.UUID) // never acked
	case <-ctx.Done():
		os.Exit(3)
	}
	<-ctx.Done() // until killed
	os.Exit(3)
}

func TestNodeClaimsFromKilledGoConsumer(t *testing.T) {
	b, prefix := newBus(t)
	ids := publishJobs(t, b)
	child := exec.Command(os.Args[0], "-test.run=^TestHeartbeatChildProcess$", "-test.timeout=90s")
	child.Env = append(os.Environ(), envHeartbeatChild+"=1", "REDIS_URL="+redistest.URL(), "PREFIX="+prefix)
	holder := start(t, child)
	require.True(t, strings.HasPrefix(holder.line(t, 30*time.Second), "holding "))
	require.Eventually(t, func() bool { return pendingOf(t, b, "go-child") == heartbeatCount }, 20*time.Second, 20*time.Millisecond,
		"the Go consumer reads the whole stream ahead")

	cmd := exec.Command("node", "test/interop/consume.mjs")
	cmd.Env = append(os.Environ(), "REDIS_URL="+redistest.URL(), "PREFIX="+prefix, "GROUP="+heartbeatGroup, "CONSUMER=node-1",
		"TYPE="+heartbeatType, fmt.Sprintf("COUNT=%d", heartbeatCount), "CLAIM_MIN_IDLE_MS=600000")
	survivor := start(t, cmd)
	select {
	case l := <-survivor.lines:
		t.Fatalf("the Node consumer took an entry of the live Go consumer (or ended): %q; stderr:\n%s", l, survivor.stderr.String())
	case <-time.After(aliveWindow):
	}
	assert.Equal(t, heartbeatCount, pendingOf(t, b, "go-child"), "the live Go consumer keeps its entries")

	holder.kill()
	for len(ids) > 0 {
		var ev struct {
			ID       string
			Delivery int
		}
		l := survivor.line(t, 30*time.Second)
		require.NoError(t, json.Unmarshal([]byte(l), &ev), l)
		assert.True(t, ids[ev.ID], "unexpected event %s", ev.ID)
		assert.Equal(t, 2, ev.Delivery, "claimed from the Go consumer, its second delivery")
		delete(ids, ev.ID)
	}
	require.NoError(t, survivor.wait(), survivor.stderr.String())
	assert.Zero(t, pendingOf(t, b, "go-child"))
	assert.Zero(t, pendingOf(t, b, "node-1"), "the Node consumer acked what it claimed")
}
