//go:build !cluster

// A proxy in front of one cluster node is bypassed by MOVED redirects, so this test is not built for the cluster run (-tags cluster); the single-server run covers it.

package router_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/faultproxy"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/router"
)

// A router started while Redis is unreachable runs, is not consuming, and
// handles the events (also those published meanwhile) once Redis answers.
func TestRunWaitsForRedis(t *testing.T) {
	opts, err := redis.ParseURL(redistest.URL())
	require.NoError(t, err)
	p, err := faultproxy.New(opts.Addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	p.SetRefusing(true)
	proxied := redis.NewClient(&redis.Options{Addr: p.Addr(), DB: opts.DB, Username: opts.Username, Password: opts.Password, MaxRetries: -1})
	t.Cleanup(func() { _ = proxied.Close() })
	prefix := redistest.Prefix(t)
	b, err := bus.New(bus.Config{ServiceName: "svc", Client: proxied, StreamPrefix: prefix}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })

	r, err := router.New(b, routertest.FastConfig(), nil)
	require.NoError(t, err)
	got := make(chan string, 10)
	handle := func(_ context.Context, m *message.Message) error { got <- m.UUID; return nil }
	require.NoError(t, r.AddHandler("one", "rstart.a", handle))
	require.NoError(t, r.AddHandler("many", "rstart.>", handle))

	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-runErr })
	select {
	case <-r.Running():
	case err := <-runErr:
		t.Fatalf("Run returned while Redis was down: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the router did not start running in 10 s")
	}
	assert.Equal(t, map[string]bool{"one": false, "many": false}, r.Consuming(), "not consuming while Redis is down")

	pub := newBus(t, prefix) // another service, on Redis directly
	ids := publishN(t, pub, "rstart.a", 1)
	p.SetRefusing(false)
	for range 2 { // one per handler
		select {
		case id := <-got:
			assert.Equal(t, ids[0], id)
		case err := <-runErr:
			t.Fatalf("Run returned: %v", err)
		case <-time.After(15 * time.Second):
			t.Fatal("the event was not handled within 15 s of Redis answering")
		}
	}
	assert.Equal(t, map[string]bool{"one": true, "many": true}, r.Consuming())
}
