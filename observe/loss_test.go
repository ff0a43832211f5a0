package observe_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/observe"
	"github.com/shared-infra/eventbus/router"
)

// Entries trimmed before a handler's group read them show in /stats, in
// eventbus_handler_lost_total and, with LossDegradedFor, in /readyz.
func TestLossIsReportedInStatsMetricsAndReadiness(t *testing.T) {
	b := newBus(t)
	cfg := fastConfig()
	cfg.Subscriber.BatchSize = 1
	r, err := router.New(b, cfg, nil)
	require.NoError(t, err)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	require.NoError(t, r.AddHandler("paused", "loss.a", func(ctx context.Context, _ *message.Message) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, router.WithTimeout(-1)))
	_, _, srv := newObserver(t, r, observe.Config{LagDegradedThreshold: -1, LossDegradedFor: time.Hour}, nil)
	routertest.Start(t, r)
	ctx := context.Background()
	key := b.Config().StreamKey("loss.a")
	t.Cleanup(func() { _ = b.Client().Del(context.Background(), b.Config().LossKey("loss.a")).Err() })

	for i := range 50 {
		_, err := bus.Publish(ctx, r.Publisher(), "loss.a", job{N: i})
		require.NoError(t, err)
	}
	group := r.ConsumerGroup("paused")
	require.Eventually(t, func() bool {
		p, err := b.Client().XPending(ctx, key, group).Result()
		return err == nil && p.Count == 1
	}, 10*time.Second, 20*time.Millisecond)
	code, h := getHealth(t, srv, observe.PathReadyz)
	require.Equal(t, http.StatusOK, code, "no loss yet")
	assert.Equal(t, int64(0), h.Checks.Handlers["paused"].Lost)

	// Someone trims the stream to its last 5 entries.
	require.NoError(t, b.Client().XTrimMaxLen(ctx, key, 5).Err())
	groups, err := b.Client().XInfoGroups(ctx, key).Result()
	require.NoError(t, err)
	require.Len(t, groups, 1)
	want := 45 - groups[0].EntriesRead // removed, less what the group had read
	require.Positive(t, want)
	_, err = b.Trim(ctx)
	require.NoError(t, err)

	s := getStats(t, srv)
	assert.Equal(t, want, s.Handlers["paused"].Lost)
	require.Len(t, s.Handlers["paused"].Streams, 1)
	assert.Equal(t, want, s.Handlers["paused"].Streams[0].Lost)
	assert.Equal(t, int64(5), s.Handlers["paused"].Lag, "no phantom lag: the 5 retained entries")
	lost, ok := value(scrape(t, srv), "eventbus_handler_lost_total", "handler_name", "paused")
	assert.True(t, ok)
	assert.Equal(t, float64(want), lost)

	code, h = getHealth(t, srv, observe.PathReadyz)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, observe.StatusDegraded, h.Checks.Handlers["paused"].Status)
	assert.Equal(t, want, h.Checks.Handlers["paused"].Lost)
	assert.Contains(t, h.Checks.Handlers["paused"].Detail, "trimmed before it read them")
}
