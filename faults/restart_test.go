//go:build faults

package faults

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"

	"github.com/shared-infra/eventbus/bus"
)

// faultClientOptions are the go-redis options the fault tests give the bus's
// client (see docs/reliability.md, "Client options"):
//
//   - DialTimeout, ReadTimeout, WriteTimeout 1 s: a dead or stalled server
//     shows up as an error within a second instead of the 3 s (read) default.
//     Blocking XREADGROUPs are not cut short by ReadTimeout: go-redis waits
//     BLOCK + 10 s for them.
//   - ContextTimeoutEnabled: a Publish returns by its context's deadline.
//   - MaxRetries -1: go-redis does not retry a command on its own. A retried
//     XADD whose first reply was lost (not whose request was lost) writes the
//     event twice; without retries the publisher sees the error and decides.
//     The subscriber needs no help: it retries reads with exponential backoff,
//     and entries whose XACK failed are delivered again.
func faultClientOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:                  addr,
		DialTimeout:           time.Second,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
	}
}

// TestRedisRestartUnderLoad shuts the Redis server down (SIGTERM) while events
// are being published and consumed, and starts it again ~1 s later on the same
// port and data directory (append-only file, fsync always). Publish must fail
// while Redis is down; every event whose Publish succeeded must be handled;
// the subscriber resumes by itself.
func TestRedisRestartUnderLoad(t *testing.T) {
	x := newRow(t, "Redis restart under load (SIGTERM, down ~1 s, AOF fsync always)")
	dir := t.TempDir()
	srv := startRedisServer(t, dir, 0)
	client := redis.NewClient(faultClientOptions(srv.addr()))
	t.Cleanup(func() { _ = client.Close() })
	logger := &recLogger{}
	b := newBus(t, client, "faults:restart:", logger)
	const topic = "fault.restart"
	key := b.Config().StreamKey(topic)
	tr := newTracker()

	cfg := bus.SubscriberConfig{
		ConsumerGroup: "restart",
		BlockTime:     100 * time.Millisecond,
		ClaimInterval: 500 * time.Millisecond,
		ClaimMinIdle:  2 * time.Second,
		CloseTimeout:  2 * time.Second,
	}
	_, ch := subscribe(t, b, cfg, topic)
	go consume(ch, tr, 0)

	ctx, stopPublishing := context.WithCancel(context.Background())
	var pubDone sync.WaitGroup
	pubDone.Add(1)
	go func() {
		defer pubDone.Done()
		publishLoop(ctx, b.Publisher(), topic, tr, 2*time.Millisecond, time.Second)
	}()
	t.Cleanup(func() { stopPublishing(); pubDone.Wait() })

	time.Sleep(1500 * time.Millisecond)
	tr.mu.Lock()
	failedBefore := len(tr.failed)
	tr.mu.Unlock()
	downAt := time.Now()
	srv.stop(syscall.SIGTERM)
	stoppedIn := time.Since(downAt)
	time.Sleep(time.Second)
	tr.mu.Lock()
	failedWhileDown := len(tr.failed) - failedBefore
	tr.mu.Unlock()
	startRedisServer(t, dir, srv.port) // stopped at cleanup
	upAt := time.Now()
	time.Sleep(2500 * time.Millisecond)
	stopPublishing()
	pubDone.Wait()

	missing := tr.waitAllHandled(10 * time.Second)
	lost := tr.fill(x)
	assert.Empty(t, missing, "events acked to the publisher but never handled")
	assert.Positive(t, failedWhileDown, "Publish must fail while Redis is down")
	handledRecovery := tr.firstHandledAfter(upAt)
	publishRecovery := tr.firstAckedAfter(upAt)
	assert.GreaterOrEqual(t, handledRecovery, time.Duration(0), "nothing handled after the restart")
	pending := waitNoPending(t, client, key, cfg.ConsumerGroup, 5*time.Second)
	assert.Zero(t, pending, "entries left pending in the group after the restart (%d read-error and %d ack-failure log lines)",
		logger.countErrors("Read failed"), logger.countErrors("Ack failed"))

	_, _, failedButHandled := tr.stats()
	x.Recovery = fmtDur(handledRecovery)
	x.Notes = fmt.Sprintf("%d Publish errors (%d while down, stop took %s); publish recovery %s; %d errored-but-written events handled; %d entries left pending; recovery = restart → first event handled",
		len(tr.failed), failedWhileDown, fmtDur(stoppedIn), fmtDur(publishRecovery), failedButHandled, pending)
	if len(lost) > 0 {
		t.Logf("lost: %v", lost[:min(10, len(lost))])
	}
}
