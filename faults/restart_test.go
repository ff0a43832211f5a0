//go:build faults

package faults

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"

	"github.com/shared-infra/eventbus/internal/logtest"
)

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
	logger := &logtest.Recorder{}
	const topic = "fault.restart"
	b, key, tr := setup(t, client, "faults:restart:", topic, logger)
	cfg := loadConfig("restart")
	stopPublishing := startLoad(t, b, cfg, topic, tr)

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

	missing := tr.waitAllHandled(10 * time.Second)
	lost := tr.fill(x)
	assert.Empty(t, missing, "events acked to the publisher but never handled")
	assert.Positive(t, failedWhileDown, "Publish must fail while Redis is down")
	handledRecovery := tr.firstHandledAfter(upAt)
	publishRecovery := tr.firstAckedAfter(upAt)
	assert.GreaterOrEqual(t, handledRecovery, time.Duration(0), "nothing handled after the restart")
	pending := waitNoPending(t, client, key, cfg.ConsumerGroup, 5*time.Second)
	assert.Zero(t, pending, "entries left pending in the group after the restart (%d read-error and %d ack-failure log lines)",
		logger.CountErrors("Read failed"), logger.CountErrors("Ack failed"))

	_, _, failedButHandled := tr.stats()
	x.Recovery = fmtDur(handledRecovery)
	x.Notes = fmt.Sprintf("%d Publish errors (%d while down, stop took %s); publish recovery %s; %d errored-but-written events handled; %d entries left pending; recovery = restart → first event handled",
		len(tr.failed), failedWhileDown, fmtDur(stoppedIn), fmtDur(publishRecovery), failedButHandled, pending)
	if len(lost) > 0 {
		t.Logf("lost: %v", lost[:min(10, len(lost))])
	}
}
