//go:build !cluster

// These tests put a fault proxy or an ACL user in front of one Redis
// server; on a cluster the client's MOVED redirects bypass a proxy in front
// of one node, and ACL users are per node, so the cluster build leaves them
// out (make test runs them against a single server).

package bus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/faultproxy"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// downRedis returns a direct client to the test Redis and a client through
// a proxy that refuses every connection until p.SetRefusing(false): a Redis
// that is down when the consumer starts.
func downRedis(t *testing.T) (direct redis.UniversalClient, proxied *redis.Client, p *faultproxy.Proxy) {
	t.Helper()
	direct = redistest.Client(t)
	opts, err := redis.ParseURL(redistest.URL())
	require.NoError(t, err)
	p, err = faultproxy.New(opts.Addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	p.SetRefusing(true)
	po := &redis.Options{Addr: p.Addr(), DB: opts.DB, Username: opts.Username, Password: opts.Password,
		DialTimeout: 200 * time.Millisecond, MaxRetries: -1}
	proxied = redis.NewClient(po)
	t.Cleanup(func() { _ = proxied.Close() })
	return direct, proxied, p
}

func TestSubscribeWaitsForRedis(t *testing.T) {
	for _, topic := range []string{"start.down", "start.>"} {
		t.Run(topic, func(t *testing.T) {
			direct, proxied, p := downRedis(t)
			prefix := redistest.Prefix(t)
			b, err := bus.New(bus.Config{ServiceName: "svc", Client: proxied, StreamPrefix: prefix}, watermill.NopLogger{})
			require.NoError(t, err)
			t.Cleanup(func() { _ = b.Close() })
			sub, err := b.NewSubscriber(fastSub("g"))
			require.NoError(t, err)

			ch, err := sub.Subscribe(ctxT(t), topic)
			require.NoError(t, err, "Subscribe must not fail while Redis is unreachable")
			assert.Equal(t, 0, sub.Subscriptions(), "not consuming until Redis answers")

			// An event published (by another service) while this consumer waits.
			direct2, err := bus.New(bus.Config{ServiceName: "pub", Client: direct, StreamPrefix: prefix}, nil)
			require.NoError(t, err)
			t.Cleanup(func() { _ = direct2.Close() })
			require.NoError(t, direct2.Publisher().Publish("start.down", message.NewMessage("e-1", []byte(`{"n":1}`))))

			p.SetRefusing(false)
			got := receive(t, ch, 1, 15*time.Second)
			assert.Equal(t, "e-1", got[0].UUID)
			assert.Equal(t, 1, sub.Subscriptions())
		})
	}
}

func TestSubscribeFailsFastOnMisconfiguration(t *testing.T) {
	opts, err := redis.ParseURL(redistest.URL())
	require.NoError(t, err)
	admin := redistest.Client(t)
	user := "eventbus-test-" + strings.ToLower(watermill.NewShortUUID()[:8])
	// May run every command, but on keys of another prefix only: a user
	// whose key pattern does not cover the bus's prefix.
	require.NoError(t, admin.Do(context.Background(), "ACL", "SETUSER", user, "on", ">pw", "~other:*", "&*", "+@all").Err())
	t.Cleanup(func() { _ = admin.Do(context.Background(), "ACL", "DELUSER", user).Err() })

	cases := []struct{ name, user, password, want string }{
		{"wrong password", user, "not-the-password", "WRONGPASS"},
		{"unknown user", user + "-nobody", "pw", "WRONGPASS"},
		{"ACL denial", user, "pw", "NOPERM"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			client := redis.NewClient(&redis.Options{Addr: opts.Addr, DB: opts.DB, Username: c.user, Password: c.password})
			t.Cleanup(func() { _ = client.Close() })
			b, err := bus.New(bus.Config{ServiceName: "svc", Client: client, StreamPrefix: redistest.Prefix(t)}, nil)
			require.NoError(t, err)
			t.Cleanup(func() { _ = b.Close() })
			for _, topic := range []string{"start.bad", "start.>"} {
				sub, err := b.NewSubscriber(fastSub("g"))
				require.NoError(t, err)
				_, err = sub.Subscribe(ctxT(t), topic)
				require.Error(t, err, "a misconfiguration fails at once")
				assert.Contains(t, err.Error(), c.want)
				assert.False(t, bus.IsTransient(err))
				assert.Equal(t, 0, sub.Subscriptions())
			}
		})
	}
}

// A dead-letter write that fails is not retried in a tight loop: while Redis
// is unreachable, Add backs off (50 ms doubling) until its context ends.
func TestDeadLetterAddBacksOffWhileRedisIsDown(t *testing.T) {
	_, proxied, p := downRedis(t)
	b, err := bus.New(bus.Config{ServiceName: "svc", Client: proxied, StreamPrefix: redistest.Prefix(t)}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = b.DeadLetters().Add(ctx, deliveredMessage("e-1", "g"), bus.DeadLetterInfo{Reason: "boom", Group: "g"})
	require.Error(t, err)
	assert.True(t, bus.IsTransient(err), "%v", err)
	// 50, 100, 200, 400 ms (±20%) fit in the second: at most 5 attempts,
	// each one connection attempt (the client does not retry by itself);
	// a tight loop would make hundreds.
	assert.GreaterOrEqual(t, p.Refused(), 2, "retried")
	assert.LessOrEqual(t, p.Refused(), 6, "backed off")
}
