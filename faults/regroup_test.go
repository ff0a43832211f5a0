//go:build faults

package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/internal/redistest"
)

// TestGroupDestroyedUnderLoad runs XGROUP DESTROY on the group of a
// subscriber under load, after thousands of events were handled. The
// subscriber re-creates the group where it was: events handled again must
// be at most what it held in flight (its read-ahead), not the retention.
func TestGroupDestroyedUnderLoad(t *testing.T) {
	x := newRow(t, "XGROUP DESTROY of a consuming group under load")
	client := redistest.Client(t)
	const topic = "fault.regroup"
	b, key, tr := setup(t, client, redistest.Prefix(t), topic, nil)
	cfg := loadConfig("regroup")
	stopPublishing := startLoad(t, b, cfg, topic, tr)
	deadline := time.Now().Add(30 * time.Second)
	for {
		handled, _, _ := tr.stats()
		if handled >= 1000 {
			break
		}
		require.True(t, time.Now().Before(deadline), "1,000 events not handled in 30 s")
		time.Sleep(20 * time.Millisecond)
	}
	handledBefore, _, _ := tr.stats()
	require.NoError(t, client.XGroupDestroy(t.Context(), key, cfg.ConsumerGroup).Err())
	time.Sleep(time.Second)
	stopPublishing()
	missing := tr.waitAllHandled(15 * time.Second)
	lost := tr.fill(x)
	assert.Empty(t, missing, "events never handled")
	assert.Zero(t, waitNoPending(t, client, key, cfg.ConsumerGroup, 5*time.Second), "entries left pending")
	_, dup, _ := tr.stats()
	assert.LessOrEqual(t, dup, 100, "re-handled more than the default read-ahead (BatchSize 100): the group was replayed")
	x.Notes = fmt.Sprintf("group destroyed after %d events handled; %d re-handled (bound: what the subscriber held, BatchSize 100); re-created after the newest entry read, held entries put back (XCLAIM FORCE)", handledBefore, dup)
	if len(lost) > 0 {
		t.Logf("lost: %v", lost[:min(10, len(lost))])
	}
}
