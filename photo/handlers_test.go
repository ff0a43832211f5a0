package photo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/jpeg"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/middleware"
	"github.com/shared-infra/eventbus/photo"
	"github.com/shared-infra/eventbus/router"
)

// newBus returns a bus of service on the test Redis under prefix.
func newBus(t *testing.T, prefix, service string) *bus.Bus {
	t.Helper()
	b, err := bus.New(bus.Config{ServiceName: service, Client: redistest.Client(t), StreamPrefix: prefix}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	require.NoError(t, photo.RegisterSchemas(context.Background(), b), "every service registers the photo schemas at start")
	return b
}

// testConfig is a router config with short timings.
func testConfig() router.Config {
	return router.Config{
		Retry:          middleware.Retry{MaxAttempts: 3, InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond},
		HandlerTimeout: 20 * time.Second,
		CloseTimeout:   5 * time.Second,
		Subscriber:     bus.SubscriberConfig{BlockTime: 20 * time.Millisecond, ClaimInterval: 200 * time.Millisecond, ClaimMinIdle: 10 * time.Second},
	}
}

// startRouter builds a router on b with cfg, lets register add its handlers,
// and runs it until the test ends.
func startRouter(t *testing.T, b *bus.Bus, cfg router.Config, register func(*router.Router) error) *router.Router {
	t.Helper()
	r, err := router.New(b, cfg, nil)
	require.NoError(t, err)
	require.NoError(t, register(r))
	routertest.Start(t, r)
	return r
}

func diskStore(t *testing.T) *photo.DiskStore {
	t.Helper()
	s, _ := newStore(t)
	return s
}

// ingress publishes uploads as an API service would, schemas checked.
type ingress struct {
	pub   message.Publisher
	store photo.Store
}

func newIngress(t *testing.T, prefix string, store photo.Store) *ingress {
	t.Helper()
	return &ingress{pub: newBus(t, prefix, "api").Publisher(), store: store}
}

// upload stores data as the original of photo id (unless data is nil) and
// publishes photo.uploaded. It returns the event id.
func (in *ingress) upload(t *testing.T, id, owner, filename string, data []byte) string {
	t.Helper()
	key := "originals/" + id
	if data != nil {
		require.NoError(t, in.store.Put(t.Context(), key, bytes.NewReader(data)))
	}
	evID, err := bus.Publish(t.Context(), in.pub, photo.TypeUploaded, photo.Uploaded{
		PhotoID: id, OwnerID: owner, Key: key, Filename: filename, ContentType: "image/jpeg", Size: int64(len(data)),
	}, bus.WithSubject(id))
	require.NoError(t, err)
	return evID
}

// events returns every event of type typ in its stream, oldest first.
func events[T any](t *testing.T, b *bus.Bus, typ string) []bus.Event[T] {
	t.Helper()
	entries, err := b.Client().XRange(context.Background(), b.Config().StreamKey(typ), "-", "+").Result()
	require.NoError(t, err)
	return decodeEntries[T](t, entries)
}

func decodeEntries[T any](t *testing.T, entries []redis.XMessage) []bus.Event[T] {
	t.Helper()
	out := make([]bus.Event[T], 0, len(entries))
	for _, e := range entries {
		msg, err := bus.Marshaller{}.Unmarshal(e.Values)
		require.NoError(t, err)
		ev, err := bus.Decode[T](msg)
		require.NoError(t, err)
		out = append(out, ev)
	}
	return out
}

// waitLen waits until the stream of typ holds n entries.
func waitLen(t *testing.T, b *bus.Bus, typ string, n int64, timeout time.Duration) {
	t.Helper()
	key := b.Config().StreamKey(typ)
	require.Eventually(t, func() bool {
		l, _ := b.Client().XLen(context.Background(), key).Result()
		return l >= n
	}, timeout, 10*time.Millisecond, "%d %s events", n, typ)
}

func waitTerminal(t *testing.T, b *bus.Bus, n int64, timeout time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		c, _ := b.Client().XLen(context.Background(), b.Config().StreamKey(photo.TypeProcessingCompleted)).Result()
		f, _ := b.Client().XLen(context.Background(), b.Config().StreamKey(photo.TypeProcessingFailed)).Result()
		return c+f >= n
	}, timeout, 10*time.Millisecond, "%d photos completed or failed", n)
}

func byPhoto[T any](evs []bus.Event[T]) map[string][]bus.Event[T] {
	m := map[string][]bus.Event[T]{}
	for _, ev := range evs {
		m[ev.Subject] = append(m[ev.Subject], ev)
	}
	return m
}

func TestWorkerRendersThumbnailsAndReportsProgress(t *testing.T) {
	prefix := redistest.Prefix(t)
	store := diskStore(t)
	b := newBus(t, prefix, "worker")
	startRouter(t, b, testConfig(), func(r *router.Router) error {
		return photo.RegisterWorker(r, photo.WorkerConfig{Store: store})
	})
	in := newIngress(t, prefix, store)

	type want struct {
		format string
		w, h   int
		thumbs map[string][2]int
	}
	photos := map[string]want{
		// Small images: the race detector slows pixel loops 20-30 times.
		"jpeg-1": {photo.FormatJPEG, 720, 480, map[string][2]int{"small": {160, 107}, "medium": {640, 427}}},
		"png-1":  {photo.FormatPNG, 240, 400, map[string][2]int{"small": {96, 160}, "medium": {240, 400}}}, // never upscaled
		"gif-1":  {photo.FormatGIF, 400, 100, map[string][2]int{"small": {160, 40}, "medium": {400, 100}}},
	}
	uploadIDs := map[string]string{}
	for _, id := range []string{"jpeg-1", "png-1", "gif-1"} {
		p := photos[id]
		uploadIDs[id] = in.upload(t, id, "owner-"+id, id+"."+p.format, generate(t, p.format, p.w, p.h))
	}
	waitTerminal(t, b, 3, 30*time.Second)
	assert.Empty(t, events[photo.ProcessingFailed](t, b, photo.TypeProcessingFailed))

	completed := byPhoto(events[photo.ProcessingCompleted](t, b, photo.TypeProcessingCompleted))
	started := byPhoto(events[photo.ProcessingStarted](t, b, photo.TypeProcessingStarted))
	progress := byPhoto(events[photo.ProcessingProgress](t, b, photo.TypeProcessingProgress))
	for id, p := range photos {
		require.Len(t, completed[id], 1, id)
		ev := completed[id][0]
		c := ev.Data
		assert.Equal(t, id, c.PhotoID)
		assert.Equal(t, "owner-"+id, c.OwnerID)
		assert.Equal(t, p.format, c.Format, id)
		assert.Equal(t, [2]int{p.w, p.h}, [2]int{c.Width, c.Height}, id)
		assert.GreaterOrEqual(t, c.DurationMs, int64(0))
		// Worker events carry the subject, are not addressed to a user, and
		// are caused by (and correlated with) the upload.
		assert.Equal(t, id, ev.Subject)
		assert.Empty(t, ev.User)
		assert.Equal(t, uploadIDs[id], ev.CausationID)
		assert.Equal(t, uploadIDs[id], ev.CorrelationID)
		assert.Equal(t, "worker", ev.Source)

		require.Len(t, c.Thumbnails, 2, id)
		for i, size := range photo.DefaultThumbnailSizes {
			th := c.Thumbnails[i]
			assert.Equal(t, size.Name, th.Size)
			assert.Equal(t, "thumbnails/"+id+"/"+size.Name+".jpg", th.Key)
			assert.Equal(t, p.thumbs[size.Name], [2]int{th.Width, th.Height}, "%s %s", id, size.Name)
			rc, err := store.Get(t.Context(), th.Key)
			require.NoError(t, err)
			cfg, err := jpeg.DecodeConfig(rc)
			rc.Close()
			require.NoError(t, err, "%s is a JPEG", th.Key)
			assert.Equal(t, [2]int{th.Width, th.Height}, [2]int{cfg.Width, cfg.Height}, th.Key)
		}

		require.Len(t, started[id], 1, id)
		assert.Equal(t, photo.ProcessingStarted{PhotoID: id, OwnerID: "owner-" + id}, started[id][0].Data)
		assert.Empty(t, started[id][0].User)
		var stages []string
		var percents []int
		for _, pe := range progress[id] {
			stages = append(stages, pe.Data.Stage)
			percents = append(percents, pe.Data.Percent)
			assert.Empty(t, pe.User)
		}
		assert.Equal(t, []string{"decoding", "thumbnail:medium", "thumbnail:small"}, stages, id)
		assert.Equal(t, []int{10, 30, 60}, percents, id)
	}
}

func TestWorkerThumbnailSizesMatchMakeThumbnail(t *testing.T) {
	// Sizes are rendered largest first, each from the smallest larger
	// thumbnail that covers it; the dimensions must still be those of
	// MakeThumbnail on the original.
	prefix := redistest.Prefix(t)
	store := diskStore(t)
	b := newBus(t, prefix, "worker")
	sizes := []photo.ThumbnailSize{
		{Name: "tiny", MaxWidth: 17, MaxHeight: 17},
		{Name: "wide", MaxWidth: 300, MaxHeight: 45},
		{Name: "medium", MaxWidth: 320, MaxHeight: 320},
		{Name: "tall", MaxWidth: 50, MaxHeight: 0},
		{Name: "same", MaxWidth: 320, MaxHeight: 320},
	}
	startRouter(t, b, testConfig(), func(r *router.Router) error {
		return photo.RegisterWorker(r, photo.WorkerConfig{Store: store, Sizes: sizes, ThumbnailPrefix: "media/th"})
	})
	in := newIngress(t, prefix, store)
	data := generate(t, photo.FormatJPEG, 501, 333)
	in.upload(t, "odd", "u1", "odd.jpg", data)
	waitLen(t, b, photo.TypeProcessingCompleted, 1, 30*time.Second)

	_, img, err := photo.Inspect(bytes.NewReader(data), photo.ImagingConfig{})
	require.NoError(t, err)
	c := events[photo.ProcessingCompleted](t, b, photo.TypeProcessingCompleted)[0].Data
	require.Len(t, c.Thumbnails, len(sizes))
	for i, s := range sizes {
		want := photo.MakeThumbnail(img, s).Bounds()
		th := c.Thumbnails[i]
		assert.Equal(t, s.Name, th.Size)
		assert.Equal(t, photo.ThumbnailKey("media/th", "odd", s.Name), th.Key)
		assert.Equal(t, [2]int{want.Dx(), want.Dy()}, [2]int{th.Width, th.Height}, s.Name)
	}
	keys, err := store.List(t.Context(), "media/th/odd/")
	require.NoError(t, err)
	assert.Len(t, keys, len(sizes))
}

func TestWorkerReportsBadFilesAndKeepsWorking(t *testing.T) {
	prefix := redistest.Prefix(t)
	store := diskStore(t)
	b := newBus(t, prefix, "worker")
	r := startRouter(t, b, testConfig(), func(r *router.Router) error {
		return photo.RegisterWorker(r, photo.WorkerConfig{Store: store, Imaging: photo.ImagingConfig{MaxPixels: 10_000}})
	})
	in := newIngress(t, prefix, store)

	good := generate(t, photo.FormatJPEG, 120, 80)
	in.upload(t, "corrupt", "u1", "corrupt.jpg", good[:len(good)/2])
	in.upload(t, "text", "u1", "notes.jpg", []byte("these are my holiday notes, not a picture\n"))
	in.upload(t, "missing", "u1", "gone.jpg", nil)
	in.upload(t, "huge", "u1", "huge.png", generate(t, photo.FormatPNG, 200, 60))
	in.upload(t, "empty", "u1", "empty.jpg", []byte{})
	in.upload(t, "good", "u1", "good.jpg", good)
	waitTerminal(t, b, 6, 30*time.Second)

	failed := byPhoto(events[photo.ProcessingFailed](t, b, photo.TypeProcessingFailed))
	want := map[string]struct{ code, reason string }{
		"corrupt": {photo.CodeCorrupt, "corrupt image: the JPEG data is truncated or damaged"},
		"text":    {photo.CodeUnsupportedFormat, "unsupported format: the file is not a JPEG, PNG or GIF image"},
		"missing": {photo.CodeNotFound, "the uploaded file is no longer stored; please upload it again"},
		"huge":    {photo.CodeTooLarge, "too large: 200x60 pixels exceeds the 10000-pixel limit"},
		"empty":   {photo.CodeCorrupt, "corrupt image: the file is empty"},
	}
	require.Len(t, failed, len(want))
	for id, w := range want {
		require.Len(t, failed[id], 1, id)
		ev := failed[id][0]
		assert.Equal(t, w.code, ev.Data.Code, id)
		assert.True(t, strings.HasPrefix(ev.Data.Reason, w.reason), "%s: reason %q, want it to start with %q", id, ev.Data.Reason, w.reason)
		assert.Equal(t, "u1", ev.Data.OwnerID)
		assert.Empty(t, ev.User)
		keys, err := store.List(t.Context(), "thumbnails/"+id+"/")
		require.NoError(t, err)
		assert.Empty(t, keys, "no thumbnails for %s", id)
	}
	completed := events[photo.ProcessingCompleted](t, b, photo.TypeProcessingCompleted)
	require.Len(t, completed, 1)
	assert.Equal(t, "good", completed[0].Data.PhotoID, "the worker went on after the bad files")

	// Bad files are outcomes, not handler errors: nothing failed, retried or dead-lettered.
	st := r.Stats()[photo.HandlerWorker]
	assert.Zero(t, st.Failed)
	assert.Zero(t, st.Retried)
	assert.Zero(t, st.DeadLettered)
	assert.EqualValues(t, 6, st.Acked)
}

func TestWorkerDeadLettersAnUnusablePhotoID(t *testing.T) {
	prefix := redistest.Prefix(t)
	store := diskStore(t)
	b := newBus(t, prefix, "worker")
	startRouter(t, b, testConfig(), func(r *router.Router) error {
		return photo.RegisterWorker(r, photo.WorkerConfig{Store: store})
	})
	in := newIngress(t, prefix, store)
	_, err := bus.Publish(t.Context(), in.pub, photo.TypeUploaded, photo.Uploaded{PhotoID: "a/../b", OwnerID: "u1", Key: "originals/x"})
	require.NoError(t, err)
	in.upload(t, "fine", "u1", "fine.jpg", generate(t, photo.FormatJPEG, 64, 64))
	waitLen(t, b, photo.TypeProcessingCompleted, 1, 20*time.Second)
	require.Eventually(t, func() bool { l, _ := b.DeadLetters().Len(t.Context()); return l == 1 }, 5*time.Second, 10*time.Millisecond)
	d, err := b.DeadLetters().List(t.Context(), "-", 1)
	require.NoError(t, err)
	assert.Contains(t, d[0].Reason, `photo id "a/../b"`)
	assert.Equal(t, 1, d[0].Attempts, "not retried")
	started := events[photo.ProcessingStarted](t, b, photo.TypeProcessingStarted)
	require.Len(t, started, 1)
	assert.Equal(t, "fine", started[0].Subject, "nothing was started for the unusable id")
}

// flakyStore fails the first failPuts Puts of thumbnails.
type flakyStore struct {
	photo.Store
	failPuts atomic.Int64
}

func (s *flakyStore) Put(ctx context.Context, key string, r io.Reader) error {
	if strings.HasPrefix(key, "thumbnails/") && s.failPuts.Add(-1) >= 0 {
		return errors.New("disk unavailable")
	}
	return s.Store.Put(ctx, key, r)
}

func TestWorkerRetriesTransientStoreErrors(t *testing.T) {
	prefix := redistest.Prefix(t)
	store := &flakyStore{Store: diskStore(t)}
	store.failPuts.Store(2)
	b := newBus(t, prefix, "worker")
	r := startRouter(t, b, testConfig(), func(r *router.Router) error {
		return photo.RegisterWorker(r, photo.WorkerConfig{Store: store})
	})
	in := newIngress(t, prefix, store)
	in.upload(t, "p1", "u1", "p1.jpg", generate(t, photo.FormatJPEG, 200, 100))
	waitLen(t, b, photo.TypeProcessingCompleted, 1, 20*time.Second)

	st := r.Stats()[photo.HandlerWorker]
	assert.EqualValues(t, 2, st.Retried)
	assert.Zero(t, st.DeadLettered)
	assert.Empty(t, events[photo.ProcessingFailed](t, b, photo.TypeProcessingFailed))
	assert.Len(t, events[photo.ProcessingCompleted](t, b, photo.TypeProcessingCompleted), 1)
	// The retried attempts published "started" again, under the same event
	// id: the publisher's deduplication stored it once.
	started := events[photo.ProcessingStarted](t, b, photo.TypeProcessingStarted)
	require.Len(t, started, 1)
	assert.GreaterOrEqual(t, b.Publisher().Duplicates(), int64(2), "the repeats were not dropped by the publisher")
}

func TestTwoWorkersProcessABatchExactlyOnce(t *testing.T) {
	batchSizes := []photo.ThumbnailSize{{Name: "small", MaxWidth: 32, MaxHeight: 32}, {Name: "medium", MaxWidth: 64, MaxHeight: 64}}
	prefix := redistest.Prefix(t)
	store := diskStore(t)
	var routers []*router.Router
	for range 2 {
		cfg := testConfig()
		cfg.Subscriber.BatchSize = 2 // read few at a time, so both instances get work
		b := newBus(t, prefix, "worker")
		routers = append(routers, startRouter(t, b, cfg, func(r *router.Router) error {
			return photo.RegisterWorker(r, photo.WorkerConfig{Store: store, Sizes: batchSizes})
		}))
	}
	in := newIngress(t, prefix, store)
	const n = 50
	formats := []string{photo.FormatJPEG, photo.FormatPNG, photo.FormatGIF}
	for i := range n {
		f := formats[i%len(formats)]
		in.upload(t, fmt.Sprintf("p%02d", i), "u1", "x."+f, generate(t, f, 100+i, 60))
	}
	b := routers[0].Bus()
	waitTerminal(t, b, n, 60*time.Second)
	time.Sleep(200 * time.Millisecond) // a duplicate would show up by now

	assert.Empty(t, events[photo.ProcessingFailed](t, b, photo.TypeProcessingFailed))
	completed := byPhoto(events[photo.ProcessingCompleted](t, b, photo.TypeProcessingCompleted))
	started := byPhoto(events[photo.ProcessingStarted](t, b, photo.TypeProcessingStarted))
	assert.Len(t, completed, n)
	assert.Len(t, started, n)
	for i := range n {
		id := fmt.Sprintf("p%02d", i)
		assert.Len(t, completed[id], 1, "completed events of %s", id)
		assert.Len(t, started[id], 1, "started events of %s", id)
	}
	keys, err := store.List(t.Context(), "thumbnails/")
	require.NoError(t, err)
	assert.Len(t, keys, 2*n)

	a, c := routers[0].Stats()[photo.HandlerWorker].Acked, routers[1].Stats()[photo.HandlerWorker].Acked
	t.Logf("split: %d / %d", a, c)
	assert.EqualValues(t, n, a+c)
	assert.Positive(t, a)
	assert.Positive(t, c)
}

// pushEntries returns the entries of the push stream (events for browsers).
func pushEntries(t *testing.T, b *bus.Bus) []bus.Event[photo.Notification] {
	t.Helper()
	entries, err := b.Client().XRange(context.Background(), b.Config().PushKey(), "-", "+").Result()
	require.NoError(t, err)
	return decodeEntries[photo.Notification](t, entries)
}

func TestNotifierAddressesTheOwner(t *testing.T) {
	prefix := redistest.Prefix(t)
	b := newBus(t, prefix, "notifier")
	startRouter(t, b, testConfig(), func(r *router.Router) error { return photo.RegisterNotifier(r) })
	pub := newIngress(t, prefix, diskStore(t)).pub
	thumbs := []photo.Thumbnail{{Size: "small", Key: "thumbnails/p1/small.jpg", Width: 160, Height: 107}}
	completedID, err := bus.Publish(t.Context(), pub, photo.TypeProcessingCompleted, photo.ProcessingCompleted{
		PhotoID: "p1", OwnerID: "alice", Width: 1200, Height: 800, Format: photo.FormatJPEG, Thumbnails: thumbs, DurationMs: 42,
	}, bus.WithSubject("p1"))
	require.NoError(t, err)
	_, err = bus.Publish(t.Context(), pub, photo.TypeProcessingFailed, photo.ProcessingFailed{
		PhotoID: "p2", OwnerID: "bob", Reason: "corrupt image: the JPEG data is truncated or damaged", Code: photo.CodeCorrupt,
	}, bus.WithSubject("p2"))
	require.NoError(t, err)
	waitLen(t, b, photo.TypeNotification, 2, 10*time.Second)

	push := pushEntries(t, b)
	require.Len(t, push, 2, "both notifications are on the push stream")
	got := map[string]bus.Event[photo.Notification]{}
	for _, ev := range push {
		assert.Equal(t, photo.TypeNotification, ev.Type)
		got[ev.User] = ev
	}
	alice, bob := got["alice"], got["bob"]
	assert.Equal(t, "p1", alice.Subject)
	assert.Equal(t, photo.Notification{
		PhotoID: "p1", Status: photo.StatusCompleted, Message: "Your photo is ready: 1200x800 JPEG, 1 thumbnail.", Thumbnails: thumbs,
	}, alice.Data)
	assert.Equal(t, completedID, alice.CausationID)
	assert.Equal(t, "p2", bob.Subject)
	assert.Equal(t, photo.Notification{
		PhotoID: "p2", Status: photo.StatusFailed, Message: "Your photo could not be processed: corrupt image: the JPEG data is truncated or damaged.",
	}, bob.Data)
	// The same events are on the notification stream itself.
	assert.Len(t, events[photo.Notification](t, b, photo.TypeNotification), 2)
}

func TestCleanupRemovesThumbnails(t *testing.T) {
	prefix := redistest.Prefix(t)
	store := diskStore(t)
	for _, k := range []string{
		"thumbnails/p1/small.jpg", "thumbnails/p1/medium.jpg", // deleted
		"thumbnails/p10/small.jpg", "originals/p1", "other/p1/small.jpg", // kept
	} {
		require.NoError(t, store.Put(t.Context(), k, strings.NewReader("x")))
	}
	b := newBus(t, prefix, "cleanup")
	r := startRouter(t, b, testConfig(), func(r *router.Router) error { return photo.RegisterCleanup(r, store, "") })
	pub := newIngress(t, prefix, store).pub
	for _, id := range []string{"p1", "never-processed"} {
		_, err := bus.Publish(t.Context(), pub, photo.TypeDeleted, photo.Deleted{PhotoID: id, OwnerID: "u1"}, bus.WithSubject(id))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return r.Stats()[photo.HandlerCleanup].Acked == 2 }, 10*time.Second, 10*time.Millisecond)
	assert.Zero(t, r.Stats()[photo.HandlerCleanup].Failed)
	keys, err := store.List(t.Context(), "")
	require.NoError(t, err)
	assert.Equal(t, []string{"originals/p1", "other/p1/small.jpg", "thumbnails/p10/small.jpg"}, keys)
}

func TestRegisterValidatesItsArguments(t *testing.T) {
	b, err := bus.New(bus.Config{ServiceName: "svc", RedisURL: "redis://127.0.0.1:1/0"}, nil) // never contacted
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	r, err := router.New(b, router.Config{}, nil)
	require.NoError(t, err)

	err = photo.RegisterWorker(r, photo.WorkerConfig{
		Sizes:           []photo.ThumbnailSize{{Name: "small"}, {Name: "small"}, {Name: "../x"}, {Name: ""}},
		ThumbnailPrefix: "thumbs/",
	})
	require.Error(t, err)
	for _, want := range []string{"Store is required", `"small" is used twice`, `name "../x"`, `name ""`, `ThumbnailPrefix "thumbs/"`} {
		assert.Contains(t, err.Error(), want)
	}
	assert.Error(t, photo.RegisterWorker(r, photo.WorkerConfig{Store: diskStore(t), ThumbnailPrefix: "../up"}))
	assert.Error(t, photo.RegisterCleanup(r, nil, ""))
	assert.Error(t, photo.RegisterCleanup(r, diskStore(t), "/abs"))
	assert.Empty(t, r.Handlers(), "nothing registered by a failed call")

	require.NoError(t, photo.RegisterWorker(r, photo.WorkerConfig{Store: diskStore(t)}))
	require.NoError(t, photo.RegisterNotifier(r))
	require.NoError(t, photo.RegisterCleanup(r, diskStore(t), ""))
	assert.Equal(t, map[string]string{
		photo.HandlerWorker:          photo.TypeUploaded,
		photo.HandlerNotifyCompleted: photo.TypeProcessingCompleted,
		photo.HandlerNotifyFailed:    photo.TypeProcessingFailed,
		photo.HandlerCleanup:         photo.TypeDeleted,
	}, r.Handlers())
	assert.ErrorIs(t, photo.RegisterWorker(r, photo.WorkerConfig{Store: diskStore(t)}), router.ErrHandlerExists)
}

func TestRegisterSchemasStoresEachTypeOnceAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	prefix := redistest.Prefix(t)
	b := newBus(t, prefix, "api") // registers once
	require.NoError(t, photo.RegisterSchemas(ctx, b), "a restart registers the same schemas again")
	list, err := b.Schemas().List(ctx)
	require.NoError(t, err)
	require.Len(t, list, len(photo.Schemas()))
	for _, s := range list {
		assert.Equal(t, 1, s.Version, "%s: the same schema registered twice is one version", s.Type)
		assert.JSONEq(t, string(photo.Schemas()[s.Type]), string(s.Document))
	}
}

// A completed event that reaches the notifier twice (written twice by a
// producer without deduplication, as a redelivery brings it again) gives
// its owner one notification: the notifier runs once per event (WithDedup).
func TestNotifierNotifiesOncePerEvent(t *testing.T) {
	prefix := redistest.Prefix(t)
	b := newBus(t, prefix, "notifier")
	r := startRouter(t, b, testConfig(), func(r *router.Router) error { return photo.RegisterNotifier(r) })
	raw, err := bus.New(bus.Config{ServiceName: "raw", Client: b.Client(), StreamPrefix: prefix, DedupWindow: -1}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = raw.Close() })
	for range 2 {
		_, err := bus.Publish(t.Context(), raw.Publisher(), photo.TypeProcessingCompleted, photo.ProcessingCompleted{
			PhotoID: "p1", OwnerID: "alice", Width: 10, Height: 10, Format: photo.FormatJPEG, DurationMs: 1,
		}, bus.WithID("completed-p1"), bus.WithSubject("p1"))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return r.Stats()[photo.HandlerNotifyCompleted].Acked == 2 }, 10*time.Second, 10*time.Millisecond)
	assert.EqualValues(t, 1, r.Stats()[photo.HandlerNotifyCompleted].Duplicates)
	assert.Len(t, events[photo.Notification](t, b, photo.TypeNotification), 1)
	assert.Len(t, pushEntries(t, b), 1, "one notification for the browser")
}
