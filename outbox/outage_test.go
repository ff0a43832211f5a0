//go:build !cluster

// The fault proxy fronts one Redis node, so this test is not built for the cluster run (-tags cluster).

package outbox_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/faultproxy"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/outbox"
)

// TestRedisOutageLosesNothing: while the forwarder cannot reach Redis, its
// publishes fail and the rows stay; when Redis is back every event arrives.
func TestRedisOutageLosesNothing(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := context.Background()
	opt, err := redis.ParseURL(redistest.URL())
	require.NoError(t, err)
	proxy, err := faultproxy.New(opt.Addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	popt := *opt
	popt.Addr = proxy.Addr()
	popt.MaxRetries = -1
	client := redis.NewClient(&popt)
	t.Cleanup(func() { _ = client.Close() })
	fb, err := bus.New(bus.Config{ServiceName: "forwarder", Client: client, StreamPrefix: e.bus.Config().StreamPrefix}, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = fb.Close() })

	proxy.SetRefusing(true)
	proxy.CutAll()
	const n = 50
	commit(t, e, n)

	reg := prometheus.NewRegistry()
	f, err := outbox.NewForwarder(e.db, fb.Publisher(), outbox.ForwarderConfig{
		Table: e.table, Registerer: reg, PollInterval: 20 * time.Millisecond, RetryInterval: 50 * time.Millisecond,
	}, nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() { require.NoError(t, f.Close()); require.NoError(t, <-done) })

	waitFor(t, func() bool { return counterValue(t, reg, "eventbus_outbox_publish_errors_total") >= 3 },
		"publishes failing while Redis is unreachable")
	rows, _, err := outbox.Pending(ctx, e.db, e.table)
	require.NoError(t, err)
	require.EqualValues(t, n, rows, "rows kept while Redis is unreachable")

	proxy.SetRefusing(false)
	got := e.entries(t, "order.placed", n)
	ids := map[string]bool{}
	for _, m := range got {
		ids[m.Values[bus.AttrID].(string)] = true
	}
	require.Len(t, ids, n)
}

func commit(t *testing.T, e *env, n int) {
	t.Helper()
	ctx := context.Background()
	tx, err := e.db.BeginTx(ctx, &sql.TxOptions{})
	require.NoError(t, err)
	for i := range n {
		_, err := bus.Publish(ctx, e.ob.Publisher(tx), "order.placed", i)
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit())
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not seen within 20 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// counterValue returns the value of the counter named name in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
