// Package demo runs the photo pipeline end to end, as separate services
// would, and prints a readable trace of every photo's events. It backs
// `eventbus demo`; examples/photo-pipeline shows the same wiring, shorter.
//
// Run is safe to call from several goroutines at once: each run has its own
// stream prefix, store and (when embedded) Redis.
package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/rediskeys"
	"github.com/shared-infra/eventbus/photo"
	"github.com/shared-infra/eventbus/router"
)

// DefaultTimeout is the default Options.Timeout.
const DefaultTimeout = 30 * time.Second

// Options configures Run. The zero value runs the demo on an embedded Redis.
type Options struct {
	// RedisURL is the Redis to use (redis:// or rediss://). Empty starts an
	// embedded Redis (miniredis) for the run.
	RedisURL string
	// StreamPrefix is the stream key prefix of every service. Default: a
	// fresh "demo-<8 hex digits>:" per run, so runs on one Redis never mix;
	// the keys under a generated prefix are deleted at the end of the run
	// (unless KeepStreams). A prefix given here is never deleted.
	StreamPrefix string
	// KeepStreams keeps the streams of a generated prefix in Redis after the
	// run, to inspect them with redis-cli or `eventbus tail`.
	KeepStreams bool
	// Timeout bounds the wait for every photo to be completed or failed and
	// its owner notified. Default DefaultTimeout.
	Timeout time.Duration
	// ImageScale scales the dimensions of the generated images. Default 1
	// (480 to 2400 pixels wide). Tests use less: the race detector slows
	// pixel loops 20 to 30 times.
	ImageScale float64
	// Logger receives the services' logs. Nil logs nothing.
	Logger watermill.LoggerAdapter
}

// Summary is what a run did.
type Summary struct {
	// Photos is the number of files uploaded.
	Photos int
	// Completed and Failed count the photos that ended each way.
	Completed int
	Failed    int
	// Thumbnails is the number of thumbnail files in the store at the end.
	Thumbnails int
	// Notifications counts the photo.notification events sent to owners.
	Notifications int
	// DeadLetters is the length of the dead-letter stream at the end (0
	// when every handler did its job).
	DeadLetters int64
	// Duration is the time from the first upload to the last notification.
	Duration time.Duration
	// Redis says which Redis was used (password redacted).
	Redis string
	// StreamPrefix is the prefix the run used.
	StreamPrefix string
}

func (o *Options) setDefaults() (generated bool) {
	if o.StreamPrefix == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		o.StreamPrefix = "demo-" + hex.EncodeToString(b[:]) + ":"
		generated = true
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.ImageScale <= 0 {
		o.ImageScale = 1
	}
	if o.Logger == nil {
		o.Logger = watermill.NopLogger{}
	}
	return generated
}

// Run uploads a set of generated photos (JPEG, PNG and GIF images of various
// sizes, a truncated JPEG and a text file named .jpg) through three services,
// each with its own bus and router as separate processes would have:
//
//   - api: stores each original and publishes photo.uploaded;
//   - worker: photo.RegisterWorker, which renders the thumbnails;
//   - notifier: photo.RegisterNotifier, which tells each owner the outcome;
//
// plus a listener on "photo.>" that writes to w, photo by photo in upload
// order, the trace of its events (time since the first upload, type,
// details). Run returns when every photo is completed or failed and its owner
// notified, after writing a summary; or with an error when opts.Timeout
// passes first or ctx is done (the Summary then counts what finished).
func Run(ctx context.Context, w io.Writer, opts Options) (Summary, error) {
	if w == nil {
		w = io.Discard
	}
	generated := opts.setDefaults()
	sum := Summary{StreamPrefix: opts.StreamPrefix}

	redisURL := opts.RedisURL
	embedded := redisURL == ""
	if embedded {
		mr, err := miniredis.Run()
		if err != nil {
			return sum, fmt.Errorf("demo: start the embedded Redis: %w", err)
		}
		defer mr.Close()
		redisURL = "redis://" + mr.Addr() + "/0"
		sum.Redis = "embedded Redis (miniredis) at " + mr.Addr()
	} else {
		sum.Redis = bus.RedactURL(redisURL)
	}

	dir, err := os.MkdirTemp("", "eventbus-demo-")
	if err != nil {
		return sum, fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(dir)
	store, err := photo.NewDiskStore(dir)
	if err != nil {
		return sum, fmt.Errorf("demo: %w", err)
	}

	uploads, err := sampleUploads(opts.ImageScale)
	if err != nil {
		return sum, fmt.Errorf("demo: %w", err)
	}
	sum.Photos = len(uploads)

	p := &pipeline{opts: opts, url: redisURL, embedded: embedded}
	defer p.close()
	if generated && !embedded && !opts.KeepStreams {
		defer p.deleteStreams()
	}
	if err := p.start(ctx, store, uploads, w); err != nil {
		return sum, err
	}
	fmt.Fprintf(w, "eventbus demo on %s, stream prefix %q\n", sum.Redis, opts.StreamPrefix)
	fmt.Fprintf(w, "services: api (publishes uploads), worker (%s), notifier (%s, %s), trace (listens on photo.>)\n",
		photo.HandlerWorker, photo.HandlerNotifyCompleted, photo.HandlerNotifyFailed)
	fmt.Fprintf(w, "uploading %d photos\n\n", len(uploads))

	p.trace.begin(time.Now())
	for _, u := range uploads {
		if err := p.upload(ctx, store, u); err != nil {
			return sum, err
		}
	}

	timer := time.NewTimer(opts.Timeout)
	defer timer.Stop()
	var waitErr error
	select {
	case <-p.trace.done:
	case <-timer.C:
		waitErr = fmt.Errorf("demo: timed out after %s: %s", opts.Timeout, p.trace.unfinished())
	case <-ctx.Done():
		waitErr = ctx.Err()
	}
	// Stop the services: the trace gets no more events after this.
	if waitErr == nil {
		p.drain(5 * time.Second)
	}
	p.closeRouters()
	p.trace.finish()

	st := p.trace.stats()
	sum.Completed, sum.Failed, sum.Notifications, sum.Duration = st.completed, st.failed, st.notifications, st.duration
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if keys, err := store.List(cctx, photo.DefaultThumbnailPrefix+"/"); err == nil {
		sum.Thumbnails = len(keys)
	}
	if n, err := p.api.DeadLetters().Len(cctx); err == nil {
		sum.DeadLetters = n
	}
	fmt.Fprintf(w, "summary: %d photos, %d completed, %d failed, %d thumbnails written, %d notifications, %d dead letters, in %s\n",
		sum.Photos, sum.Completed, sum.Failed, sum.Thumbnails, sum.Notifications, sum.DeadLetters, sum.Duration.Round(time.Millisecond))
	return sum, waitErr
}

// pipeline is the services of one run.
type pipeline struct {
	opts     Options
	url      string
	embedded bool

	buses   []*bus.Bus
	routers []*router.Router
	runs    []chan error
	cancel  context.CancelFunc

	api    *bus.Bus
	apiPub message.Publisher
	trace  *tracer
}

// subscriberConfig is the subscriber template of every router. On the
// embedded Redis it works around two differences of miniredis v2.40.0 from
// Redis in XCLAIM (see TestMiniredisRunsTheBusCommands): it ignores
// min-idle-time, so claiming from other consumers could hand one entry to two
// of them, and it counts the keepalive's XCLAIM JUSTID as a delivery. Every
// group here has one consumer, so claiming is switched off, and the keepalive
// (every ClaimMinIdle/3) made rare.
func (p *pipeline) subscriberConfig() bus.SubscriberConfig {
	cfg := bus.SubscriberConfig{BlockTime: 100 * time.Millisecond}
	if p.embedded {
		cfg.ClaimInterval = -1
		cfg.ClaimMinIdle = 10 * time.Minute
	}
	return cfg
}

func (p *pipeline) newBus(service string) (*bus.Bus, error) {
	b, err := bus.New(bus.Config{ServiceName: service, RedisURL: p.url, StreamPrefix: p.opts.StreamPrefix}, p.opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("demo: %s bus: %w", service, err)
	}
	p.buses = append(p.buses, b)
	return b, nil
}

// start builds and runs the services.
func (p *pipeline) start(ctx context.Context, store photo.Store, uploads []upload, w io.Writer) error {
	var err error
	if p.api, err = p.newBus("api"); err != nil {
		return err
	}
	if err := p.api.Ping(ctx); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := photo.RegisterSchemas(ctx, p.api); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	p.apiPub = p.api.Publisher() // the one publish path: it checks the schemas

	p.trace = newTracer(w, uploads)
	services := []struct {
		name     string
		register func(*router.Router) error
	}{
		{"worker", func(r *router.Router) error { return photo.RegisterWorker(r, photo.WorkerConfig{Store: store}) }},
		{"notifier", func(r *router.Router) error { return photo.RegisterNotifier(r) }},
		{"trace", func(r *router.Router) error { return r.AddHandler("trace", "photo.>", p.trace.handle) }},
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	for _, s := range services {
		b, err := p.newBus(s.name)
		if err != nil {
			return err
		}
		cfg := router.Config{CloseTimeout: 5 * time.Second, Subscriber: p.subscriberConfig()}
		r, err := router.New(b, cfg, p.opts.Logger)
		if err != nil {
			return fmt.Errorf("demo: %s router: %w", s.name, err)
		}
		if err := s.register(r); err != nil {
			return fmt.Errorf("demo: %s: %w", s.name, err)
		}
		done := make(chan error, 1)
		go func() { done <- r.Run(runCtx) }()
		p.routers = append(p.routers, r)
		p.runs = append(p.runs, done)
		select {
		case <-r.Running():
		case err := <-done:
			return fmt.Errorf("demo: %s router stopped at start: %w", s.name, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// upload is what the api service does with an uploaded file.
func (p *pipeline) upload(ctx context.Context, store photo.Store, u upload) error {
	key := "originals/" + u.id + extension(u.filename)
	if err := store.Put(ctx, key, bytes.NewReader(u.data)); err != nil {
		return fmt.Errorf("demo: store %s: %w", u.filename, err)
	}
	_, err := bus.Publish(ctx, p.apiPub, photo.TypeUploaded, photo.Uploaded{
		PhotoID: u.id, OwnerID: u.owner, Key: key, Filename: u.filename,
		ContentType: u.contentType, Size: int64(len(u.data)),
	}, bus.WithSubject(u.id))
	if err != nil {
		return fmt.Errorf("demo: publish the upload of %s: %w", u.filename, err)
	}
	return nil
}

func extension(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i:]
	}
	return ""
}

// drain waits, at most timeout, until no handler of any router is working
// on an event. The last notification reaches the trace while the worker and
// the notifier are still returning from their handlers, and a router closed
// at that moment cancels their events' contexts; the router then
// dead-letters those events ("context canceled") although they were handled.
func (p *pipeline) drain(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		busy := false
		for _, r := range p.routers {
			for _, st := range r.Stats() {
				busy = busy || st.InFlight > 0
			}
		}
		if !busy {
			return
		}
		<-tick.C
	}
}

// closeRouters stops every router and waits for its Run to return.
func (p *pipeline) closeRouters() {
	if p.cancel != nil {
		p.cancel()
	}
	for i, r := range p.routers {
		_ = r.Close()
		<-p.runs[i]
	}
	p.routers, p.runs = nil, nil
}

func (p *pipeline) close() {
	p.closeRouters()
	for _, b := range p.buses {
		_ = b.Close()
	}
	p.buses = nil
}

// deleteStreams removes every key under the run's generated prefix; a
// failure is logged, not returned.
func (p *pipeline) deleteStreams() {
	opt, err := redis.ParseURL(p.url)
	if err != nil {
		return
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rediskeys.DeletePrefix(ctx, c, p.opts.StreamPrefix); err != nil && !errors.Is(err, context.Canceled) {
		p.opts.Logger.Error("Cannot delete the demo keys", err, watermill.LogFields{"prefix": p.opts.StreamPrefix})
	}
}
