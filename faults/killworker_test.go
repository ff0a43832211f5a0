//go:build faults

package faults

import (
	"context"
	"fmt"
	"os"
	"strconv"
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
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/middleware"
	"github.com/shared-infra/eventbus/router"
)

// The router worker killed between handle and ack: child and survivor run
// the same router handler (router.New defaults), with or without
// router.WithDedup, and count every run of the handler in a Redis hash.
const (
	helperRouterWorker = "router-worker"
	envDedup           = "FAULTS_DEDUP" // "1": the handler has router.WithDedup
	envRuns            = "FAULTS_RUNS"  // the hash counting handler runs, per event id

	workerService = "faults-worker" // ServiceName of child and survivor: one consumer group
	workerHandler = "work"
)

// countingHandler is the handler of the router-worker test: it counts its
// run of the event in the hash runsKey (HINCRBY, before anything else, so a
// run killed later in the handler is counted), calls onRun, then works for
// 5 ms, so that a SIGKILL can land inside a run as well as between a run and
// its ack.
func countingHandler(client redis.UniversalClient, runsKey string, onRun func(*message.Message)) router.HandlerFunc {
	return func(ctx context.Context, msg *message.Message) error {
		if err := client.HIncrBy(ctx, runsKey, msg.UUID, 1).Err(); err != nil {
			return err
		}
		onRun(msg)
		time.Sleep(5 * time.Millisecond)
		return nil
	}
}

func workerOptions(dedup bool) []router.HandlerOption {
	if dedup {
		return []router.HandlerOption{router.WithDedup(0)}
	}
	return nil
}

// routerWorker is the child of TestWorkerKilledBetweenHandleAndAck: a router
// at defaults with countingHandler, printing a HANDLED line per run, until it
// is killed (or 90 s pass).
func routerWorker() int {
	b, err := bus.New(bus.Config{ServiceName: workerService, RedisURL: os.Getenv(envURL), StreamPrefix: os.Getenv(envPrefix)}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	r, err := router.New(b, router.Config{}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	h := countingHandler(b.Client(), os.Getenv(envRuns), func(msg *message.Message) {
		printHandled(msg.UUID, msg.Metadata.Get(bus.MetaStreamID))
	})
	if err := r.AddHandler(workerHandler, os.Getenv(envTopic), h, workerOptions(os.Getenv(envDedup) == "1")...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return runChildRouter(r)
}

// runChildRouter runs r in a child, printing READY once it runs, for at
// most 90 s.
func runChildRouter(r *router.Router) int {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	go func() {
		select {
		case <-r.Running():
			printReady()
		case <-ctx.Done():
		}
	}()
	if err := r.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

// TestWorkerKilledBetweenHandleAndAck kills with SIGKILL a worker process
// running a router handler (router.New defaults: BatchSize 100 read ahead,
// HeartbeatTTL 2 s) over a backlog, while it has handled events whose acks
// are not written yet (and usually one run in the middle of the handler); a
// survivor with the same handler finishes. Every run of the handler, in
// either process, is counted in a Redis hash.
//
// With router.WithDedup, an event is marked handled after its handler
// succeeds: no event marked when the worker died may run again (a run
// killed before its mark may, legitimately). Without it, every event the
// worker ran but had not acked runs again: that count is reported, not
// asserted (it depends on where the kill lands).
func TestWorkerKilledBetweenHandleAndAck(t *testing.T) {
	for _, dedup := range []bool{true, false} {
		name := "without dedup"
		if dedup {
			name = "with router.WithDedup"
		}
		t.Run(name, func(t *testing.T) { workerKilled(t, dedup) })
	}
}

func workerKilled(t *testing.T, dedup bool) {
	opt := "no dedup option"
	if dedup {
		opt = "router.WithDedup (middleware.Dedup, RedisHandledStore)"
	}
	x := newRow(t, "SIGKILL of a router worker between handle and ack, router defaults, "+opt)
	client := redistest.Client(t)
	prefix := redistest.Prefix(t)
	const (
		topic = "fault.work"
		n     = 300
	)
	ctx := t.Context()
	b, err := bus.New(bus.Config{ServiceName: workerService, Client: client, StreamPrefix: prefix}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	tr := newTracker()
	key := b.Config().StreamKey(topic)
	runsKey := prefix + "test:runs"
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

	env := []string{envTopic + "=" + topic, envRuns + "=" + runsKey, envDedup + "=0"}
	if dedup {
		env[2] = envDedup + "=1"
	}
	c := startChild(t, helperRouterWorker, prefix, tr.handle, env...)
	c.waitReady(30 * time.Second)
	c.waitHandled(60, time.After(30*time.Second))
	killAt := c.kill()

	group := workerService + "." + workerHandler
	summary, err := client.XPending(ctx, key, group).Result()
	require.NoError(t, err)
	require.Positive(t, summary.Count, "the worker must die holding unacked entries")
	require.Len(t, summary.Consumers, 1, "only the worker consumed")
	var dead string
	for name := range summary.Consumers {
		dead = name
	}

	// What the dead worker left: its runs, and (with dedup) the events it
	// marked handled. Nothing changes them until the survivor starts.
	before := hashCounts(t, client, runsKey)
	var marked map[string]bool
	if dedup {
		marked = markedEvents(t, client, prefix, group, topic, tr)
	}

	r, err := router.New(b, router.Config{}, nil)
	require.NoError(t, err)
	var mu sync.Mutex
	survivorRuns := map[string]int{}
	require.NoError(t, r.AddHandler(workerHandler, topic, countingHandler(client, runsKey, func(msg *message.Message) {
		tr.handle(msg.UUID, msg.Metadata.Get(bus.MetaStreamID))
		mu.Lock()
		survivorRuns[msg.UUID]++
		mu.Unlock()
	}), workerOptions(dedup)...))
	routertest.Start(t, r)

	recovery := waitConsumerDrained(t, client, key, group, dead, killAt, 60*time.Second)
	missing := tr.waitAllHandled(60 * time.Second)
	assert.Zero(t, waitNoPending(t, client, key, group, 10*time.Second), "entries left pending in the group")
	after := hashCounts(t, client, runsKey)

	repeated, ranTwiceBySurvivor, markedRanAgain := 0, 0, 0
	for _, runs := range after {
		repeated += runs - 1
	}
	mu.Lock()
	for id, runs := range survivorRuns {
		if runs > 1 {
			ranTwiceBySurvivor++
		}
		if marked[id] {
			markedRanAgain++
		}
	}
	mu.Unlock()
	lost := 0
	tr.mu.Lock()
	for id := range tr.acked {
		if after[id] == 0 {
			lost++
		}
	}
	x.Published, x.Acked = tr.attempts, len(tr.acked)
	tr.mu.Unlock()
	x.Handled, x.Lost, x.Duplicated = len(after), lost, repeated
	x.Recovery = fmtDur(recovery)
	x.Notes = fmt.Sprintf("worker ran %d events (%d runs) and died holding %d pending; %d handler runs repeated", len(before), sumCounts(before), summary.Count, repeated)
	if dedup {
		x.Notes += fmt.Sprintf(" (runs killed before their mark); %d events marked at the kill, %d of them ran again", len(marked), markedRanAgain)
	} else {
		x.Notes += " (run by the worker, ack not written)"
	}
	x.Notes += "; recovery = SIGKILL → every entry of the dead worker claimed by the survivor"
	t.Log(x.Notes)

	assert.Empty(t, missing, "events never handled after the kill")
	assert.Zero(t, lost, "events whose handler never ran")
	assert.Zero(t, ranTwiceBySurvivor, "events the survivor ran twice")
	if dedup {
		require.NotEmpty(t, marked, "the worker marked nothing: the fault did not happen")
		assert.Zero(t, markedRanAgain, "events marked handled that ran again")
		// Every repeated event was one the worker had not marked.
		for id, runs := range after {
			if runs > 1 {
				assert.False(t, marked[id], "event %s marked handled ran %d times", id, runs)
			}
		}
	}
}

// hashCounts returns the hash of run counts at key.
func hashCounts(t *testing.T, client redis.UniversalClient, key string) map[string]int {
	t.Helper()
	m, err := client.HGetAll(context.Background(), key).Result()
	require.NoError(t, err)
	out := make(map[string]int, len(m))
	for k, v := range m {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		out[k] = n
	}
	return out
}

func sumCounts(m map[string]int) int {
	s := 0
	for _, v := range m {
		s += v
	}
	return s
}

// markedEvents returns the acked events of tr that middleware.Dedup marked
// handled for group (its RedisHandledStore under prefix, as
// router.WithDedup makes it).
func markedEvents(t *testing.T, client redis.UniversalClient, prefix, group, topic string, tr *tracker) map[string]bool {
	t.Helper()
	store, err := middleware.NewRedisHandledStore(client, prefix, 0)
	require.NoError(t, err)
	ids := make([]string, 0, len(tr.acked))
	tr.mu.Lock()
	for id := range tr.acked {
		ids = append(ids, id)
	}
	tr.mu.Unlock()
	pipe := client.Pipeline()
	cmds := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		m := message.NewMessage(id, nil)
		m.Metadata.Set(bus.MetaGroup, group)
		m.Metadata.Set(bus.MetaTopic, topic)
		cmds[i] = pipe.Exists(context.Background(), store.Key(middleware.HandledKey(m)))
	}
	_, err = pipe.Exec(context.Background())
	require.NoError(t, err)
	out := map[string]bool{}
	for i, c := range cmds {
		if c.Val() == 1 {
			out[ids[i]] = true
		}
	}
	return out
}

// waitConsumerDrained waits until consumer has no entry pending in group
// (all claimed by another consumer), and returns how long after since that
// was first seen.
func waitConsumerDrained(t *testing.T, client redis.UniversalClient, key, group, consumer string, since time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p, err := client.XPendingExt(context.Background(), &redis.XPendingExtArgs{
			Stream: key, Group: group, Consumer: consumer, Start: "-", End: "+", Count: 1,
		}).Result()
		require.NoError(t, err)
		if len(p) == 0 {
			return time.Since(since)
		}
		if time.Now().After(deadline) {
			t.Errorf("consumer %s still holds entries %s after the kill", consumer, timeout)
			return -1
		}
		time.Sleep(20 * time.Millisecond)
	}
}
