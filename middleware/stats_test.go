package middleware_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/middleware"
)

// TestStatsOnProcessed: every delivery Middleware counts, acked or nacked,
// reaches each OnProcessed function with its handler and duration, the
// same count as the snapshot's Processing; a removed function gets no more.
func TestStatsOnProcessed(t *testing.T) {
	s := middleware.NewStats()
	var mu sync.Mutex
	got := map[string][]time.Duration{}
	remove := s.OnProcessed(func(h string, d time.Duration) {
		mu.Lock()
		got[h] = append(got[h], d)
		mu.Unlock()
	})
	var second int
	removeSecond := s.OnProcessed(func(string, time.Duration) { second++ })

	ok := s.Middleware("a")(func(*message.Message) ([]*message.Message, error) {
		time.Sleep(time.Millisecond)
		return nil, nil
	})
	fail := s.Middleware("b")(func(*message.Message) ([]*message.Message, error) { return nil, errors.New("no") })
	for range 3 {
		_, err := ok(message.NewMessage("1", nil))
		require.NoError(t, err)
	}
	_, err := fail(message.NewMessage("2", nil))
	require.Error(t, err)

	removeSecond()
	removeSecond() // twice is harmless
	_, _ = ok(message.NewMessage("3", nil))
	remove()
	_, _ = ok(message.NewMessage("4", nil))

	require.Len(t, got["a"], 4)
	for _, d := range got["a"] {
		assert.GreaterOrEqual(t, d, time.Millisecond)
	}
	assert.Len(t, got["b"], 1)
	assert.Equal(t, 4, second, "the second function saw the deliveries before its removal")
	snap := s.Snapshot()
	assert.EqualValues(t, 5, snap["a"].Processing.Count, "the snapshot counts every delivery, hooks or not")
	assert.EqualValues(t, 1, snap["b"].Processing.Count)
}

// BenchmarkStatsMiddleware measures one counted delivery, without and with
// an OnProcessed hook that feeds a Prometheus histogram as observe's does.
func BenchmarkStatsMiddleware(b *testing.B) {
	run := func(b *testing.B, s *middleware.Stats) {
		h := s.Middleware("bench")(func(*message.Message) ([]*message.Message, error) { return nil, nil })
		msg := message.NewMessage("1", nil)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = h(msg)
			}
		})
	}
	b.Run("no-hook", func(b *testing.B) { run(b, middleware.NewStats()) })
	b.Run("histogram", func(b *testing.B) {
		s := middleware.NewStats()
		hist := prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bench_seconds", Help: "bench", Buckets: prometheus.DefBuckets,
			NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 160, NativeHistogramMinResetDuration: time.Hour,
		}, []string{"handler_name"})
		defer s.OnProcessed(func(h string, d time.Duration) { hist.WithLabelValues(h).Observe(d.Seconds()) })()
		run(b, s)
	})
}
