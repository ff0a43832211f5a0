//go:build faults

package faults

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

// TestClientKillLoop publishes events one by one while another connection
// runs CLIENT KILL TYPE normal in a loop on the test's own redis-server. The
// publisher's client keeps go-redis's default retries (a killed command whose
// reply was lost is sent again), and the caller publishes a failed event
// again with the same id. With publisher deduplication (the default) every
// event is stored exactly once; without it the count of duplicate entries is
// reported (it depends on where the kills land).
func TestClientKillLoop(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window time.Duration
	}{{"dedup on (default)", 0}, {"dedup off", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			x := newRow(t, "client-kill loop (CLIENT KILL TYPE normal every 2 ms), go-redis default retries, caller retries with the same id, "+tc.name)
			srv := startRedisServer(t, t.TempDir(), 0)
			client := redis.NewClient(&redis.Options{Addr: srv.addr()}) // go-redis defaults: MaxRetries 3
			t.Cleanup(func() { _ = client.Close() })
			killer := redis.NewClient(&redis.Options{Addr: srv.addr()})
			t.Cleanup(func() { _ = killer.Close() })
			b, err := bus.New(bus.Config{ServiceName: "killloop", Client: client, StreamPrefix: "faults:kill:", DedupWindow: tc.window}, watermill.NopLogger{})
			require.NoError(t, err)
			t.Cleanup(func() { _ = b.Close() })
			const topic, n = "fault.kill", 1500

			ctx, stop := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			kills := 0
			wg.Go(func() {
				tk := time.NewTicker(2 * time.Millisecond)
				defer tk.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tk.C:
						if k, err := killer.ClientKillByFilter(context.Background(), "TYPE", "normal", "SKIPME", "yes").Result(); err == nil {
							kills += int(k)
						}
					}
				}
			})
			failedCalls := 0
			for i := range n {
				m := message.NewMessage(fmt.Sprintf("ev-%04d", i), []byte(`{}`))
				for attempt := 0; ; attempt++ {
					if err := b.Publisher().Publish(topic, m); err == nil {
						break
					}
					failedCalls++
					require.Less(t, attempt, 50, "event %s: Publish keeps failing", m.UUID)
				}
			}
			stop()
			wg.Wait()

			xs, err := client.XRange(t.Context(), b.Config().StreamKey(topic), "-", "+").Result()
			require.NoError(t, err)
			count := map[string]int{}
			for _, e := range xs {
				count[fmt.Sprint(e.Values[bus.AttrID])]++
			}
			dups := len(xs) - len(count)
			x.Published, x.Acked, x.Handled, x.Duplicated = n, n, len(count), dups
			x.Lost = n - len(count)
			x.Notes = fmt.Sprintf("%d connections killed; %d Publish calls failed and were repeated with the same id; %d duplicate entries in the stream; publisher counted %d duplicates dropped",
				kills, failedCalls, dups, b.Publisher().Duplicates())
			t.Log(x.Notes)
			assert.Equal(t, n, len(count), "events missing from the stream")
			assert.Positive(t, kills, "no connection was killed: the fault did not happen")
			if tc.window == 0 {
				assert.Zero(t, dups, "duplicate entries in the stream with deduplication on")
			}
		})
	}
}
