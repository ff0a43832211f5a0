package bus_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
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

func msgWithID(id string, opts ...bus.Option) *message.Message {
	m := message.NewMessage(id, []byte(`{"n":1}`))
	for _, o := range opts {
		o(m)
	}
	return m
}

// streamIDs returns the event ids of every entry of stream key, in order.
func streamIDs(t *testing.T, c redis.UniversalClient, key string) []string {
	t.Helper()
	xs, err := c.XRange(t.Context(), key, "-", "+").Result()
	require.NoError(t, err)
	ids := make([]string, len(xs))
	for i, x := range xs {
		ids[i], _ = x.Values[bus.AttrID].(string)
	}
	return ids
}

// A second publish of an id to its stream writes nothing, succeeds, and says
// so on the message (with the entry id of the first write) and in the count.
func TestPublishSameIDTwiceWritesOnce(t *testing.T) {
	b := newTestBus(t)
	c := b.Client()
	pub := b.Publisher()
	first := msgWithID("dup1")
	require.NoError(t, pub.Publish("dedup.one", first)) // first publish of the type: the pipeline path
	_, dup := bus.IsDuplicate(first)
	assert.False(t, dup)

	second := msgWithID("dup1")
	require.NoError(t, pub.Publish("dedup.one", second)) // the single-XADD path
	entry, dup := bus.IsDuplicate(second)
	require.True(t, dup, "the second publish is not marked as a duplicate")

	xs, err := c.XRange(t.Context(), b.Config().StreamKey("dedup.one"), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, xs, 1)
	assert.Equal(t, xs[0].ID, entry, "the duplicate names the entry of the first write")
	assert.Equal(t, int64(1), pub.Duplicates())

	// Republishing the same message object: still a duplicate.
	require.NoError(t, pub.Publish("dedup.one", second))
	assert.Equal(t, int64(2), pub.Duplicates())
	assert.Equal(t, []string{"dup1"}, streamIDs(t, c, b.Config().StreamKey("dedup.one")))

	// The same id on another type is another event: written.
	other := msgWithID("dup1")
	require.NoError(t, pub.Publish("dedup.two", other))
	_, dup = bus.IsDuplicate(other)
	assert.False(t, dup)
	assert.Equal(t, []string{"dup1"}, streamIDs(t, c, b.Config().StreamKey("dedup.two")))
}

// Batches (one pipeline): duplicates within the batch and of earlier
// publishes are dropped; the push copy of an addressed event is written once
// however often the event is published.
func TestPublishBatchDedupAndPushCopy(t *testing.T) {
	b := newTestBus(t)
	c := b.Client()
	pub := b.Publisher()
	key := b.Config().StreamKey("dedup.batch")

	batch := []*message.Message{msgWithID("a", bus.WithUser("u1")), msgWithID("b"), msgWithID("a", bus.WithUser("u1"))}
	require.NoError(t, pub.Publish("dedup.batch", batch...))
	_, d0 := bus.IsDuplicate(batch[0])
	_, d2 := bus.IsDuplicate(batch[2])
	assert.False(t, d0)
	assert.True(t, d2, "the repeat within the batch is not marked")

	again := []*message.Message{msgWithID("b"), msgWithID("c", bus.WithUser("u1")), msgWithID("a", bus.WithUser("u1"))}
	require.NoError(t, pub.Publish("dedup.batch", again...))
	assert.Equal(t, []string{"a", "b", "c"}, streamIDs(t, c, key))
	assert.Equal(t, []string{"a", "c"}, streamIDs(t, c, b.Config().PushKey()), "push copies")
	assert.Equal(t, int64(3), pub.Duplicates())

	// An addressed event of another type with the same id has its own push copy.
	require.NoError(t, pub.Publish("dedup.other", msgWithID("a", bus.WithUser("u1"))))
	assert.Equal(t, []string{"a", "c", "a"}, streamIDs(t, c, b.Config().PushKey()))
}

// The dedup key holds the entry id and expires with the window; once it is
// gone (window passed) the id can be written again. Deleting the key stands
// for the window passing, so nothing here depends on timing.
func TestDedupKeyExpiresWithWindow(t *testing.T) {
	window := 90 * time.Second
	b := newTestBus(t, func(c *bus.Config) { c.DedupWindow = window })
	c := b.Client()
	pub := b.Publisher()
	key := b.Config().StreamKey("dedup.window")
	require.NoError(t, pub.Publish("dedup.window", msgWithID("w1")))

	dkey := b.Config().DedupKey(key, "w1")
	ttl, err := c.PTTL(t.Context(), dkey).Result()
	require.NoError(t, err)
	assert.Positive(t, ttl)
	assert.LessOrEqual(t, ttl, window)
	held, err := c.Get(t.Context(), dkey).Result()
	require.NoError(t, err)
	assert.Equal(t, streamEntryIDs(t, c, key), []string{held})

	require.NoError(t, c.Del(t.Context(), dkey).Err())
	m := msgWithID("w1")
	require.NoError(t, pub.Publish("dedup.window", m))
	_, dup := bus.IsDuplicate(m)
	assert.False(t, dup)
	assert.Equal(t, []string{"w1", "w1"}, streamIDs(t, c, key))
}

func streamEntryIDs(t *testing.T, c redis.UniversalClient, key string) []string {
	t.Helper()
	xs, err := c.XRange(t.Context(), key, "-", "+").Result()
	require.NoError(t, err)
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.ID
	}
	return out
}

// DedupWindow -1 turns deduplication off: both publishes are written and no
// dedup key is made.
func TestDedupOff(t *testing.T) {
	b := newTestBus(t, func(c *bus.Config) { c.DedupWindow = -1 })
	c := b.Client()
	pub := b.Publisher()
	key := b.Config().StreamKey("dedup.off")
	for range 2 {
		require.NoError(t, pub.Publish("dedup.off", msgWithID("x1", bus.WithRoom("r"))))
	}
	assert.Equal(t, []string{"x1", "x1"}, streamIDs(t, c, key))
	n, err := c.Exists(t.Context(), b.Config().DedupKey(key, "x1")).Result()
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Zero(t, pub.Duplicates())
}

func TestDedupWindowValidation(t *testing.T) {
	for _, w := range []time.Duration{-2, time.Microsecond} {
		cfg := bus.Config{ServiceName: "s", RedisURL: "redis://127.0.0.1:6379/0", DedupWindow: w}
		err := cfg.Validate()
		require.ErrorIs(t, err, bus.ErrInvalidConfig)
		assert.Contains(t, err.Error(), "DedupWindow")
		assert.Contains(t, err.Error(), "-1 for no deduplication")
	}
}

// lossyDialer returns a dialer whose connections, once armed, let the next
// command that writes an entry reach Redis and then lose its reply (the
// connection breaks after Redis answered), as a network cut would. go-redis
// then retries the command on a new connection.
type lossyDialer struct {
	armed atomic.Bool
	hit   atomic.Int32
}

func (d *lossyDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &lossyConn{Conn: conn, d: d}, nil
}

type lossyConn struct {
	net.Conn
	d    *lossyDialer
	mu   sync.Mutex
	lose bool
}

func (c *lossyConn) Write(p []byte) (int, error) {
	low := bytes.ToLower(p)
	if (bytes.Contains(low, []byte("xadd")) || bytes.Contains(low, []byte("evalsha"))) && c.d.armed.CompareAndSwap(true, false) {
		c.mu.Lock()
		c.lose = true
		c.mu.Unlock()
	}
	return c.Conn.Write(p)
}

func (c *lossyConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	lose := c.lose
	c.lose = false
	c.mu.Unlock()
	if !lose {
		return c.Conn.Read(p)
	}
	_, _ = c.Conn.Read(p) // Redis has run the command: its reply arrives, and is lost
	c.d.hit.Add(1)
	_ = c.Conn.Close()
	return 0, io.EOF
}

// go-redis retries a write whose reply was lost; without deduplication the
// event is stored twice (the fault is real), with it once, on both publish
// paths.
func TestDedupAbsorbsRetriedWrite(t *testing.T) {
	opts, err := redis.ParseURL(redistest.URL())
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		window time.Duration
		want   int
	}{{"dedup off", -1, 2}, {"dedup on", 0, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			d := &lossyDialer{}
			o := *opts
			o.Dialer = d.dial
			o.MaxRetries = 3
			c := redis.NewClient(&o)
			t.Cleanup(func() { _ = c.Close() })
			b, err := bus.New(bus.Config{ServiceName: "lossy", Client: c, StreamPrefix: redistest.Prefix(t), DedupWindow: tc.window}, watermill.NopLogger{})
			require.NoError(t, err)
			t.Cleanup(func() { _ = b.Close() })
			key := b.Config().StreamKey("dedup.lossy")
			for i, id := range []string{"first", "second"} { // the pipeline path, then the single-write path
				d.armed.Store(true)
				require.NoError(t, b.Publisher().Publish("dedup.lossy", msgWithID(id)))
				require.Equal(t, int32(i+1), d.hit.Load(), "no reply was lost")
			}
			got := streamIDs(t, c, key)
			count := map[string]int{}
			for _, id := range got {
				count[id]++
			}
			assert.Equal(t, map[string]int{"first": tc.want, "second": tc.want}, count, "entries per event id")
		})
	}
}

// startRedis starts a redis-server of the test's own on a free port (for a
// test that changes server-wide state) and returns a client for it.
func startRedis(t *testing.T) *redis.Client {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	require.NoError(t, err, "redis-server is not on PATH: install Redis to run this test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	t.Cleanup(func() { _ = c.Close() })
	require.Eventually(t, func() bool { return c.Ping(t.Context()).Err() == nil }, 10*time.Second, 20*time.Millisecond, "own redis-server did not answer")
	return c
}

// A server that lost its scripts (restart, failover, SCRIPT FLUSH) answers
// NOSCRIPT; the publisher loads the script and still writes each event once.
func TestDedupAfterScriptFlush(t *testing.T) {
	c := startRedis(t)
	b, err := bus.New(bus.Config{ServiceName: "flush", Client: c}, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	pub := b.Publisher()
	key := b.Config().StreamKey("dedup.flush")
	require.NoError(t, pub.Publish("dedup.flush", msgWithID("p1")))
	for _, batch := range [][]*message.Message{
		{msgWithID("p2", bus.WithUser("u")), msgWithID("p1")}, // pipeline
		{msgWithID("p3")}, // single write
	} {
		require.NoError(t, c.ScriptFlush(t.Context()).Err())
		require.NoError(t, pub.Publish("dedup.flush", batch...))
	}
	assert.Equal(t, []string{"p1", "p2", "p3"}, streamIDs(t, c, key))
	assert.Equal(t, []string{"p2"}, streamIDs(t, c, b.Config().PushKey()))
	assert.Equal(t, int64(1), pub.Duplicates())
}

// BenchmarkPublishDedup is one event per Publish to a known type with
// deduplication on (the default) and off: the cost of the dedup script.
//
//	go test -run '^$' -bench PublishDedup -benchtime 2s ./bus/
func BenchmarkPublishDedup(b *testing.B) {
	for _, tc := range []struct {
		name   string
		window time.Duration
	}{{"on", 0}, {"off", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			bb := newTestBus(b, func(c *bus.Config) { c.DedupWindow = tc.window; c.Retention.MaxLen = 10_000 })
			pub := bb.Publisher()
			require.NoError(b, pub.Publish("bench.dedup", message.NewMessage(watermill.NewUUID(), []byte(`{"n":1}`))))
			b.ReportAllocs()
			for b.Loop() {
				if err := pub.Publish("bench.dedup", message.NewMessage(watermill.NewUUID(), []byte(`{"n":1}`))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Duplicates are never silent: counted per topic in Counts (and in
// Duplicates), and logged at debug level with the event id and topic.
func TestDuplicatesCountedPerTopicAndLogged(t *testing.T) {
	logger := watermill.NewCaptureLogger()
	b, err := bus.New(bus.Config{ServiceName: "test-svc", Client: redistest.Client(t), StreamPrefix: redistest.Prefix(t)}, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	pub := b.Publisher()
	for range 3 {
		require.NoError(t, pub.Publish("dedup.counted", msgWithID("same")))
	}
	require.NoError(t, pub.Publish("dedup.counted", msgWithID("other")))
	require.NoError(t, pub.Publish("dedup.elsewhere", msgWithID("same"), msgWithID("same")))

	counts := pub.Counts()
	assert.Equal(t, bus.PublishCounts{Published: 4, Duplicates: 2}, counts["dedup.counted"])
	assert.Equal(t, bus.PublishCounts{Published: 2, Duplicates: 1}, counts["dedup.elsewhere"], "a duplicate within one call")
	assert.Equal(t, int64(3), pub.Duplicates())

	var logged []string
	for _, m := range logger.Captured()[watermill.DebugLogLevel] {
		if m.Msg == "Duplicate event not written" {
			logged = append(logged, fmt.Sprint(m.Fields["topic"], "/", m.Fields["event_id"]))
			assert.NotEmpty(t, m.Fields["earlier_entry"], "the log line names the entry written first")
		}
	}
	assert.Equal(t, []string{"dedup.counted/same", "dedup.counted/same", "dedup.elsewhere/same"}, logged)
}
