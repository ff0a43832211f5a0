//go:build faults

package faults

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/logtest"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/middleware"
	"github.com/shared-infra/eventbus/router"
)

// TestPoisonWhileRedisIsOOM dead-letters a poison event while Redis (one of
// the test's own, maxmemory noeviction) is out of memory, so the
// dead-letter write fails for 6 s. The router must not redeliver it in a
// tight loop (dead-letter writes back off), and once memory is freed the
// dead letter carries the handler's real reason, not "too many deliveries".
func TestPoisonWhileRedisIsOOM(t *testing.T) {
	x := newRow(t, "poison event while Redis is out of memory (dead-letter write fails 6 s)")
	srv := startRedisServer(t, t.TempDir(), 0)
	client := redis.NewClient(faultClientOptions(srv.addr()))
	t.Cleanup(func() { _ = client.Close() })
	ctx := context.Background()
	logger := &logtest.Recorder{}
	b, _, _ := setup(t, client, "faults:oom:", "fault.oom", logger)

	cfg := routertest.FastConfig()
	cfg.MaxDeliveries = 3
	r, err := router.New(b, cfg, logger)
	require.NoError(t, err)
	runs := make(chan struct{}, 1000)
	gate := make(chan struct{}) // closed once Redis is out of memory
	require.NoError(t, r.AddHandler("oom", "fault.oom", func(context.Context, *message.Message) error {
		runs <- struct{}{}
		<-gate
		return middleware.Permanent(fmt.Errorf("photo has no owner"))
	}))
	routertest.Start(t, r)
	require.NoError(t, b.Publisher().Publish("fault.oom", message.NewMessage("poison-1", []byte(`{}`))))
	select {
	case <-runs: // in the handler
		runs <- struct{}{}
	case <-time.After(15 * time.Second):
		t.Fatal("the poison event was not handled")
	}
	// Out of memory (maxmemory 1 byte, noeviction: every command that may
	// grow memory fails with OOM), then the handler fails.
	require.NoError(t, client.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err())
	require.NoError(t, client.ConfigSet(ctx, "maxmemory", "1").Err())
	oomAt := time.Now()
	require.Error(t, b.Publisher().Publish("fault.oom", message.NewMessage("probe", []byte(`{}`))), "Redis must refuse writes (OOM)")
	close(gate)
	time.Sleep(6 * time.Second)
	require.NoError(t, client.ConfigSet(ctx, "maxmemory", "0").Err())
	freedAt := time.Now()
	deadline := time.After(30 * time.Second)
	var dl []bus.DeadLetter
	for len(dl) == 0 {
		select {
		case <-deadline:
			t.Fatalf("not dead-lettered 30 s after memory was freed; errors: %v", logger.Errors())
		case <-time.After(50 * time.Millisecond):
		}
		dl, err = b.DeadLetters().List(ctx, "", 10)
		require.NoError(t, err)
	}
	failedWrites := logger.CountErrors("Cannot dead-letter")
	require.Len(t, dl, 1)
	// The entry id is Redis's clock when the write went through: after the OOM.
	ms, _ := strconv.ParseInt(strings.Split(dl[0].ID, "-")[0], 10, 64)
	assert.False(t, time.UnixMilli(ms).Before(freedAt.Add(-time.Second)), "dead letter %s written before memory was freed (%s)", dl[0].ID, freedAt)
	assert.Contains(t, dl[0].Reason, "photo has no owner", "the real reason is kept")
	assert.NotContains(t, dl[0].Reason, "too many deliveries")
	handlerRuns := len(runs)
	x.Published, x.Acked, x.Handled = 1, 1, 1
	x.Recovery = fmtDur(time.Since(freedAt))
	x.Notes = fmt.Sprintf("maxmemory 1 for %s: %d handler runs, %d failed dead-letter writes logged (backoff 50 ms→1 s within each 10 s attempt); dead letter reason %q (last reason %q); recovery = memory freed → dead letter written",
		fmtDur(freedAt.Sub(oomAt)), handlerRuns, failedWrites, dl[0].Reason, strings.TrimSpace(dl[0].LastReason))
}
