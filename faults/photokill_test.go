//go:build faults

package faults

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/photo"
	"github.com/shared-infra/eventbus/router"
)

// The photo pipeline with its worker killed: the worker service (the
// handler set of photo.RegisterWorker, as `eventbus demo` wires it) runs in
// a child process over a backlog of uploads and is killed with SIGKILL; a
// second worker finishes; the notifier (photo.RegisterNotifier) runs in the
// test process throughout.
const (
	helperPhotoWorker = "photo-worker"
	envStore          = "FAULTS_STORE" // the DiskStore directory of originals and thumbnails
)

// photoWorkerRouter returns the worker service's router on b: router
// defaults, photo.RegisterWorker with store, and onRun called for every run
// of the worker handler (router.Config.Middleware is inside the stack, so a
// delivery WithDedup skips is not a run).
func photoWorkerRouter(b *bus.Bus, store photo.Store, onRun func(*message.Message)) (*router.Router, error) {
	r, err := router.New(b, router.Config{Middleware: []message.HandlerMiddleware{
		func(h message.HandlerFunc) message.HandlerFunc {
			return func(msg *message.Message) ([]*message.Message, error) {
				onRun(msg)
				return h(msg)
			}
		},
	}}, nil)
	if err != nil {
		return nil, err
	}
	return r, photo.RegisterWorker(r, photo.WorkerConfig{Store: store})
}

// photoWorker is the child of TestPhotoPipelineWorkerKilled.
func photoWorker() int {
	b, err := bus.New(bus.Config{ServiceName: "worker", RedisURL: os.Getenv(envURL), StreamPrefix: os.Getenv(envPrefix)}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	store, err := photo.NewDiskStore(os.Getenv(envStore))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	r, err := photoWorkerRouter(b, store, func(msg *message.Message) {
		printHandled(msg.UUID, msg.Metadata.Get(bus.MetaStreamID))
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return runChildRouter(r)
}

// TestPhotoPipelineWorkerKilled uploads 200 photos (20 of them not images),
// lets a worker process handle some of the backlog, kills it with SIGKILL,
// and lets a second worker finish. Every photo must reach exactly one
// outcome event (photo.processing.completed or .failed), and its owner
// exactly one notification, whatever the worker was doing when it died.
func TestPhotoPipelineWorkerKilled(t *testing.T) {
	x := newRow(t, "photo pipeline, SIGKILL of the worker mid-backlog (200 uploads), router defaults")
	client := redistest.Client(t)
	prefix := redistest.Prefix(t)
	ctx := t.Context()
	const n, corrupt = 200, 20
	dir := t.TempDir()
	store, err := photo.NewDiskStore(dir)
	require.NoError(t, err)

	api, err := bus.New(bus.Config{ServiceName: "api", Client: client, StreamPrefix: prefix}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = api.Close() })
	require.NoError(t, photo.RegisterSchemas(ctx, api))

	// The notifier runs throughout, in this process.
	nb, err := bus.New(bus.Config{ServiceName: "notifier", Client: client, StreamPrefix: prefix}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nb.Close() })
	nr, err := router.New(nb, router.Config{}, nil)
	require.NoError(t, err)
	require.NoError(t, photo.RegisterNotifier(nr))
	routertest.Start(t, nr)

	tr := newTracker()
	owners := map[string]string{} // photo id -> owner
	img, err := photo.GenerateTestImage(photo.FormatJPEG, 320, 240, 7)
	require.NoError(t, err)
	for i := range n {
		id, owner := fmt.Sprintf("p-%03d", i), fmt.Sprintf("u-%02d", i%17)
		owners[id] = owner
		data := img
		if i%(n/corrupt) == 0 {
			data = []byte("not an image")
		}
		key := "originals/" + id
		require.NoError(t, store.Put(ctx, key, bytes.NewReader(data)))
		evID, err := bus.Publish(ctx, api.Publisher(), photo.TypeUploaded, photo.Uploaded{
			PhotoID: id, OwnerID: owner, Key: key, Filename: id + ".jpg", ContentType: "image/jpeg", Size: int64(len(data)),
		}, bus.WithSubject(id))
		tr.published(evID, err)
		require.NoError(t, err)
	}

	c := startChild(t, helperPhotoWorker, prefix, tr.handle, envStore+"="+dir)
	c.waitReady(30 * time.Second)
	c.waitHandled(40, time.After(60*time.Second))
	killAt := c.kill()
	uploadKey := api.Config().StreamKey(photo.TypeUploaded)
	workerGroup := "worker." + photo.HandlerWorker
	pending, err := client.XPending(ctx, uploadKey, workerGroup).Result()
	require.NoError(t, err)
	require.Positive(t, pending.Count, "the worker must die holding unacked uploads")
	var dead string
	for name := range pending.Consumers {
		dead = name
	}
	childRuns := c.handledIDs()

	wb, err := bus.New(bus.Config{ServiceName: "worker", Client: client, StreamPrefix: prefix}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = wb.Close() })
	var mu sync.Mutex
	survivorRuns := map[string]int{}
	wr, err := photoWorkerRouter(wb, store, func(msg *message.Message) {
		tr.handle(msg.UUID, msg.Metadata.Get(bus.MetaStreamID))
		mu.Lock()
		survivorRuns[msg.UUID]++
		mu.Unlock()
	})
	require.NoError(t, err)
	routertest.Start(t, wr)

	recovery := waitConsumerDrained(t, client, uploadKey, workerGroup, dead, killAt, 60*time.Second)
	missing := tr.waitAllHandled(60 * time.Second)
	assert.Empty(t, missing, "uploads the worker never ran")
	// Settled: the worker's group and both notifier groups have read and
	// acked everything (the outcome and notification streams then hold all
	// they will hold).
	waitSettled(t, client, uploadKey, workerGroup, 60*time.Second)
	waitSettled(t, client, api.Config().StreamKey(photo.TypeProcessingCompleted), "notifier."+photo.HandlerNotifyCompleted, 60*time.Second)
	waitSettled(t, client, api.Config().StreamKey(photo.TypeProcessingFailed), "notifier."+photo.HandlerNotifyFailed, 60*time.Second)

	outcomes := map[string]int{} // photo id -> outcome events
	failed := 0
	for _, typ := range []string{photo.TypeProcessingCompleted, photo.TypeProcessingFailed} {
		for _, m := range streamMessages(t, client, api.Config().StreamKey(typ)) {
			ev, err := bus.Decode[struct {
				PhotoID string `json:"photoId"`
			}](m)
			require.NoError(t, err)
			outcomes[ev.Data.PhotoID]++
			if typ == photo.TypeProcessingFailed {
				failed++
			}
		}
	}
	notified := map[string]int{} // photo id -> notifications to its owner
	wrongOwner := 0
	for _, m := range streamMessages(t, client, api.Config().StreamKey(photo.TypeNotification)) {
		ev, err := bus.Decode[photo.Notification](m)
		require.NoError(t, err)
		if m.Metadata.Get(bus.AttrUser) != owners[ev.Data.PhotoID] {
			wrongOwner++
		}
		notified[ev.Data.PhotoID]++
	}
	dupOutcomes, dupNotes, noOutcome, noNote := 0, 0, 0, 0
	for id := range owners {
		switch k := outcomes[id]; {
		case k == 0:
			noOutcome++
		case k > 1:
			dupOutcomes += k - 1
		}
		switch k := notified[id]; {
		case k == 0:
			noNote++
		case k > 1:
			dupNotes += k - 1
		}
	}
	repeatedRuns := 0
	mu.Lock()
	for id := range survivorRuns {
		if childRuns[id] > 0 {
			repeatedRuns++
		}
	}
	mu.Unlock()
	handled, _, _ := tr.stats()
	x.Published, x.Acked, x.Handled = n, n, handled
	x.Lost, x.Duplicated = noOutcome, dupOutcomes+dupNotes
	x.Recovery = fmtDur(recovery)
	x.Notes = fmt.Sprintf("worker ran %d uploads, died holding %d pending; %d worker runs repeated by the second worker (runs killed before their dedup mark); outcomes: %d completed, %d failed, %d photos without one, %d duplicate outcomes; notifications: %d duplicate, %d missing, %d to a wrong owner; duplicated = duplicate outcomes + notifications; recovery = SIGKILL → every upload the dead worker held claimed (the second worker takes its own read-ahead of new uploads first, BatchSize 100, so this includes rendering those)",
		len(childRuns), pending.Count, repeatedRuns, len(outcomes)-failed, failed, noOutcome, dupOutcomes, dupNotes, noNote, wrongOwner)
	t.Log(x.Notes)
	assert.Zero(t, noOutcome, "photos without an outcome event")
	assert.Zero(t, dupOutcomes, "duplicate outcome events")
	assert.Zero(t, noNote, "photos whose owner got no notification")
	assert.Zero(t, dupNotes, "duplicate notifications")
	assert.Zero(t, wrongOwner, "notifications to another user")
	assert.Equal(t, corrupt, failed, "failed outcomes (the uploads that are not images)")
}

// streamMessages returns every entry of the stream key, decoded.
func streamMessages(t *testing.T, client redis.UniversalClient, key string) []*message.Message {
	t.Helper()
	xs, err := client.XRange(context.Background(), key, "-", "+").Result()
	require.NoError(t, err)
	out := make([]*message.Message, 0, len(xs))
	for _, e := range xs {
		m, err := bus.Marshaller{}.Unmarshal(e.Values)
		require.NoError(t, err)
		out = append(out, m)
	}
	return out
}

// waitSettled waits until group exists on key, has read every entry (lag
// 0) and has nothing pending.
func waitSettled(t *testing.T, client redis.UniversalClient, key, group string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		groups, err := client.XInfoGroups(context.Background(), key).Result()
		if err == nil {
			for _, g := range groups {
				if g.Name == group && g.Lag == 0 && g.Pending == 0 {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s on %s not settled in %s (XINFO GROUPS: %v, %v)", group, key, timeout, groups, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
