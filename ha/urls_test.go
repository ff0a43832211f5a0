//go:build ha

package ha_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

// roundTrip publishes one event through b and receives it.
func roundTrip(t *testing.T, b *bus.Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub, err := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "url", BlockTime: 50 * time.Millisecond})
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "url.checked")
	require.NoError(t, err)
	id, err := bus.Publish(ctx, b.Publisher(), "url.checked", map[string]string{"ok": "yes"})
	require.NoError(t, err)
	select {
	case m := <-ch:
		m.Ack()
		assert.Equal(t, id, m.UUID)
	case <-ctx.Done():
		t.Fatal("the event published was not received")
	}
}

func TestSentinelURLForm(t *testing.T) {
	tp := startSentinel(t)
	b := newBus(t, tp.env["REDIS_URL"], bus.Durability{Replicas: 1})
	_, isClient := b.Client().(*redis.Client) // what redis.NewFailoverClient returns
	assert.True(t, isClient, "%T", b.Client())
	roundTrip(t, b)
}

func TestClusterURLForm(t *testing.T) {
	tp := startCluster(t)
	b := newBus(t, clusterURL(tp.env["REDIS_CLUSTER_ADDRS"]), bus.Durability{Replicas: 1})
	clusterClient(t, b)
	// The replicas must be in sync for WAIT 1 to be met.
	waitFor(t, 20*time.Second, "every replica in sync", func() bool {
		ok := true
		_ = clusterClient(t, b).ForEachSlave(context.Background(), func(ctx context.Context, c *redis.Client) error {
			ok = ok && inSync(c.Options().Addr)
			return nil
		})
		return ok
	})
	roundTrip(t, b)
}

// TestDurabilityLatency measures (and logs; no assertion on time) what WAIT 1
// costs a publish on a loopback primary with one replica: 2,000 sequential
// publishes of a 100-byte event per setting.
func TestDurabilityLatency(t *testing.T) {
	tp := startSentinel(t)
	for _, m := range modes {
		b := newBus(t, tp.env["REDIS_URL"], m.d)
		ctx := context.Background()
		payload := map[string]string{"p": strings.Repeat("x", 80)}
		for i := 0; i < 100; i++ { // warm up: connections, type registration
			_, err := bus.Publish(ctx, b.Publisher(), "lat.test", payload)
			require.NoError(t, err)
		}
		lat := make([]time.Duration, 0, 2000)
		for i := 0; i < 2000; i++ {
			start := time.Now()
			_, err := bus.Publish(ctx, b.Publisher(), "lat.test", payload)
			lat = append(lat, time.Since(start))
			require.NoError(t, err)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		t.Logf("LATENCY | %s | p50=%s p99=%s max=%s (n=%d)", m.name,
			lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond), len(lat))
	}
}

// TestPatternSubscriptionAcrossSentinelFailover: a pattern subscription (the
// registry watcher's Pub/Sub plus its resync) learns of a type first
// published after a SENTINEL FAILOVER, on the new primary.
func TestPatternSubscriptionAcrossSentinelFailover(t *testing.T) {
	tp := startSentinel(t)
	b := newBus(t, tp.env["REDIS_URL"], bus.Durability{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sub, err := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "pattern", BlockTime: 50 * time.Millisecond, ResyncInterval: 500 * time.Millisecond})
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "hap.*")
	require.NoError(t, err)
	_, err = bus.Publish(ctx, b.Publisher(), "hap.before", map[string]int{"n": 1})
	require.NoError(t, err)
	select {
	case m := <-ch:
		m.Ack()
	case <-ctx.Done():
		t.Fatal("no event before the failover")
	}

	c := newPlain(splitFirst(tp.env["REDIS_SENTINEL_ADDRS"]))
	defer c.Close()
	require.NoError(t, c.Do(ctx, "SENTINEL", "FAILOVER", tp.env["REDIS_SENTINEL_MASTER"]).Err())
	promoted := splitSecond(tp.env["REDIS_SENTINEL_NODES"])
	waitFor(t, 30*time.Second, promoted+" promoted", func() bool { return roleOf(promoted) == "master" })

	var id string
	waitFor(t, 30*time.Second, "a publish on the new primary", func() bool {
		id, err = bus.Publish(ctx, b.Publisher(), "hap.after", map[string]int{"n": 2})
		return err == nil
	})
	for {
		select {
		case m := <-ch:
			m.Ack()
			if m.UUID == id {
				return
			}
		case <-ctx.Done():
			t.Fatal("the pattern subscription did not get a type first published after the failover")
		}
	}
}

// TestSentinelURLFormWithPassword: data nodes with a password, given as the
// Sentinel form's password parameter; a wrong one fails without showing it.
func TestSentinelURLFormWithPassword(t *testing.T) {
	tp := startScript(t, "redis-sentinel.sh", "REDIS_SENTINEL_PASSWORD=hunter2secret")
	url := tp.env["REDIS_URL"]
	require.Contains(t, url, "&password=hunter2secret")
	roundTrip(t, newBus(t, url, bus.Durability{Replicas: 1}))

	wrong := strings.Replace(url, "hunter2secret", "wrong2secret", 1)
	b, err := bus.New(bus.Config{ServiceName: "ha", RedisURL: wrong, StreamPrefix: "ha:"}, nil)
	require.NoError(t, err)
	defer b.Close()
	err = b.Ping(context.Background())
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "wrong2secret")
	assert.NotContains(t, bus.RedactURL(wrong), "wrong2secret")
	t.Logf("wrong password: %v", err)
}

// TestTailClusterAcrossSlots: `eventbus tail` with a pattern whose streams
// are on different cluster slots (and masters) prints the events of all of
// them; one XREAD naming them all would be refused with CROSSSLOT.
func TestTailClusterAcrossSlots(t *testing.T) {
	tp := startCluster(t)
	url := clusterURL(tp.env["REDIS_CLUSTER_ADDRS"])
	b := newBus(t, url, bus.Durability{})
	ctx := context.Background()
	want := map[string]bool{}
	slots := map[uint16]bool{}
	for _, typ := range []string{"hat.a", "hat.b", "hat.c", "hat.d", "hat.e"} {
		slots[crc16slot(b.Config().StreamKey(typ))] = true
		id, err := bus.Publish(ctx, b.Publisher(), typ, map[string]string{"t": typ})
		require.NoError(t, err)
		want[id] = true
	}
	require.Greater(t, len(slots), 1, "the types must span several slots")
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(tctx, eventbusCLI(t), "--prefix", "ha:", "tail", "hat.*", "--from", "0", "--json", "--count", "5")
	cmd.Env = append(os.Environ(), "REDIS_URL="+url)
	out, err := cmd.Output()
	var stderr string
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = string(ee.Stderr)
	}
	require.NoError(t, err, "tail: %s", stderr)
	got := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var ev struct {
			ID string `json:"id"`
		}
		require.NoError(t, json.Unmarshal([]byte(l), &ev), l)
		got[ev.ID] = true
	}
	assert.Equal(t, want, got)
}
