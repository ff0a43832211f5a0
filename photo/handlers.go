package photo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"slices"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/google/uuid"
	"golang.org/x/image/draw"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/middleware"
	"github.com/shared-infra/eventbus/router"
)

// Handler names registered by RegisterWorker, RegisterNotifier and
// RegisterCleanup. With the service name they make the consumer groups
// ("<service>.<handler>"): instances of one service that register the same
// set share the groups and split the load.
const (
	// HandlerWorker handles TypeUploaded: it renders the thumbnails.
	HandlerWorker = "photo-thumbnailer"
	// HandlerNotifyCompleted turns TypeProcessingCompleted into a TypeNotification.
	HandlerNotifyCompleted = "photo-notify-completed"
	// HandlerNotifyFailed turns TypeProcessingFailed into a TypeNotification.
	HandlerNotifyFailed = "photo-notify-failed"
	// HandlerCleanup handles TypeDeleted: it removes the thumbnails.
	HandlerCleanup = "photo-cleanup"
)

// DefaultThumbnailPrefix is the default WorkerConfig.ThumbnailPrefix: the
// thumbnail of size "small" of photo "p1" is stored under
// "thumbnails/p1/small.jpg".
const DefaultThumbnailPrefix = "thumbnails"

// ThumbnailKey returns the store key of the thumbnail of size sizeName of
// photo photoID under prefix ("" means DefaultThumbnailPrefix):
// "<prefix>/<photoID>/<sizeName>.jpg".
func ThumbnailKey(prefix, photoID, sizeName string) string {
	if prefix == "" {
		prefix = DefaultThumbnailPrefix
	}
	return prefix + "/" + photoID + "/" + sizeName + ".jpg"
}

// WorkerConfig configures the handler set of RegisterWorker.
type WorkerConfig struct {
	// Store holds the originals (read under Uploaded.Key) and receives the
	// thumbnails. Required.
	Store Store
	// Sizes are the thumbnails rendered for every photo, in the order they
	// are listed in ProcessingCompleted.Thumbnails. Names must be unique,
	// non-empty and of [a-zA-Z0-9_-]. Default DefaultThumbnailSizes.
	Sizes []ThumbnailSize
	// Imaging limits the files accepted (size in bytes and pixels).
	Imaging ImagingConfig
	// ThumbnailPrefix is the store key prefix of thumbnails, without a
	// trailing slash; see ThumbnailKey. Default DefaultThumbnailPrefix.
	ThumbnailPrefix string
}

func (c *WorkerConfig) setDefaults() {
	if len(c.Sizes) == 0 {
		c.Sizes = DefaultThumbnailSizes
	}
	if c.ThumbnailPrefix == "" {
		c.ThumbnailPrefix = DefaultThumbnailPrefix
	}
}

// Validate reports every problem with the config at once. It never changes
// c; zero fields that take a default are valid.
func (c WorkerConfig) Validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("Store is required (it holds the originals and receives the thumbnails)"))
	}
	seen := map[string]bool{}
	for i, s := range c.Sizes {
		switch {
		case !validSizeName(s.Name):
			errs = append(errs, fmt.Errorf("thumbnail size %d in Sizes: name %q must be 1-64 characters of [a-zA-Z0-9_-] (it is part of the thumbnail's key)", i, s.Name))
		case seen[s.Name]:
			errs = append(errs, fmt.Errorf("thumbnail size %d in Sizes: name %q is used twice", i, s.Name))
		}
		seen[s.Name] = true
	}
	if err := validThumbnailPrefix(c.ThumbnailPrefix); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("photo: WorkerConfig: %w: %w", bus.ErrInvalidConfig, errors.Join(errs...))
}

func validSizeName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

func validThumbnailPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("ThumbnailPrefix %q must not end with '/'", prefix)
	}
	if err := validateKey(prefix); err != nil {
		return fmt.Errorf("ThumbnailPrefix %q: %w", prefix, err)
	}
	return nil
}

// checkPhotoID rejects a photo id that cannot be one element of a store key.
// A "/" in particular would let the cleanup of photo "a" reach the
// thumbnails of photo "a/b".
func checkPhotoID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: the photo id is empty", ErrInvalidKey)
	case id == "." || id == ".." || strings.ContainsAny(id, "/\\\x00"):
		return fmt.Errorf("%w: photo id %q: it must not be \".\" or \"..\" nor contain '/', '\\' or NUL", ErrInvalidKey, id)
	}
	return nil
}

// RegisterWorker registers on r the handler HandlerWorker for TypeUploaded,
// which processes each upload:
//
//  1. publishes TypeProcessingStarted;
//  2. reads the original from cfg.Store under Uploaded.Key and decodes it
//     with Inspect (JPEG, PNG or GIF, within cfg.Imaging's limits);
//  3. renders a JPEG thumbnail per size, stored under ThumbnailKey,
//     publishing TypeProcessingProgress before each step (stage "decoding",
//     then "thumbnail:<size>");
//  4. publishes TypeProcessingCompleted with the dimensions and format of
//     the original, the thumbnails and the duration.
//
// A file that is corrupt, not a supported image or too large, or an original
// no longer in the store, is an outcome, not a handler error: the handler
// publishes TypeProcessingFailed with a Reason that can be shown to the
// uploader and a Code (see FailureCode), and acks the upload. Transient
// errors (store I/O, a failed publish) are returned, so the router retries
// the upload and finally dead-letters it. An upload whose photo id cannot be
// part of a store key is dead-lettered at once.
//
// Every event the worker publishes has the photo id as subject and is not
// addressed to a user (RegisterNotifier does that). Publishing goes through
// the bus Publisher with the handler's context, so the events carry the
// upload's trace and correlation id and are checked against the schemas
// RegisterSchemas stored.
//
// Redelivery: the at-least-once bus may deliver an upload again (a retry, a
// crash before the ack). The work is simply redone: thumbnails are
// overwritten with identical content, and the started, progress and final
// events are published again. The started, completed and failed events of one
// upload event carry ids derived from that upload event's id, so consumers
// that deduplicate by event id see each once.
//
// opts apply to the handler, e.g. router.WithConcurrency to process several
// photos at once.
func RegisterWorker(r *router.Router, cfg WorkerConfig, opts ...router.HandlerOption) error {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	w := &worker{cfg: cfg, r: r, logger: r.Bus().Logger()}
	// Both ends deduplicate: the handler runs once per upload (WithDedup),
	// and its events have derived ids the publisher drops when repeated.
	opts = append([]router.HandlerOption{router.WithDedup(0)}, opts...)
	return router.Handle(r, HandlerWorker, TypeUploaded, w.handle, opts...)
}

type worker struct {
	cfg    WorkerConfig
	r      *router.Router
	logger watermill.LoggerAdapter
}

// failure is a processing outcome reported to the uploader (a
// TypeProcessingFailed event), as opposed to an error worth retrying.
type failure struct {
	code   string
	reason string
	err    error
}

func (f *failure) Error() string { return f.reason }
func (f *failure) Unwrap() error { return f.err }

func (w *worker) handle(ctx context.Context, ev bus.Event[Uploaded]) error {
	up := ev.Data
	if err := checkPhotoID(up.PhotoID); err != nil {
		return middleware.Permanent(fmt.Errorf("photo: %s event %s: %w", TypeUploaded, ev.ID, err))
	}
	start := time.Now()
	pub := w.r.Publisher()
	subject := bus.WithSubject(up.PhotoID)
	if _, err := bus.Publish(ctx, pub, TypeProcessingStarted,
		ProcessingStarted{PhotoID: up.PhotoID, OwnerID: up.OwnerID},
		subject, bus.WithID(derivedID(ev.ID, TypeProcessingStarted))); err != nil {
		return err
	}
	progress := func(percent int, stage string) error {
		_, err := bus.Publish(ctx, pub, TypeProcessingProgress,
			ProcessingProgress{PhotoID: up.PhotoID, OwnerID: up.OwnerID, Percent: percent, Stage: stage}, subject)
		return err
	}

	info, thumbs, err := w.process(ctx, up, progress)
	var f *failure
	switch {
	case errors.As(err, &f):
		w.logger.Info("Photo processing failed", watermill.LogFields{
			"photo_id": up.PhotoID, "code": f.code, "reason": f.reason, "error": f.err, "event_id": ev.ID,
		})
		_, err := bus.Publish(ctx, pub, TypeProcessingFailed,
			ProcessingFailed{PhotoID: up.PhotoID, OwnerID: up.OwnerID, Reason: f.reason, Code: f.code},
			subject, bus.WithID(derivedID(ev.ID, TypeProcessingFailed)))
		return err
	case err != nil:
		return err
	}
	_, err = bus.Publish(ctx, pub, TypeProcessingCompleted, ProcessingCompleted{
		PhotoID: up.PhotoID, OwnerID: up.OwnerID,
		Width: info.Width, Height: info.Height, Format: info.Format,
		Thumbnails: thumbs,
		DurationMs: time.Since(start).Milliseconds(),
	}, subject, bus.WithID(derivedID(ev.ID, TypeProcessingCompleted)))
	return err
}

// process reads, decodes and thumbnails one upload. A *failure error is an
// outcome to report; any other error is transient.
func (w *worker) process(ctx context.Context, up Uploaded, progress func(int, string) error) (Info, []Thumbnail, error) {
	rc, err := w.cfg.Store.Get(ctx, up.Key)
	switch {
	case errors.Is(err, ErrNotFound):
		return Info{}, nil, &failure{CodeNotFound, "the uploaded file is no longer stored; please upload it again", err}
	case errors.Is(err, ErrInvalidKey):
		return Info{}, nil, &failure{CodeInternal, "the uploaded file cannot be read", err}
	case err != nil:
		return Info{}, nil, err
	}
	if err := progress(10, "decoding"); err != nil {
		rc.Close()
		return Info{}, nil, err
	}
	info, img, err := Inspect(rc, w.cfg.Imaging)
	rc.Close()
	switch {
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrUnsupportedFormat), errors.Is(err, ErrTooLarge):
		return Info{}, nil, &failure{FailureCode(err), err.Error(), err}
	case err != nil:
		return Info{}, nil, err // reading the original failed
	}

	sizes := w.cfg.Sizes
	thumbs := make([]Thumbnail, len(sizes))
	made := make([]*image.RGBA, len(sizes)) // by size index, to scale the smaller ones from
	var buf bytes.Buffer
	for step, r := range renderPlan(img.Bounds(), sizes) {
		if err := ctx.Err(); err != nil {
			return Info{}, nil, err
		}
		size := sizes[r.index]
		if err := progress(30+60*step/len(sizes), "thumbnail:"+size.Name); err != nil {
			return Info{}, nil, err
		}
		src := img
		if r.from >= 0 {
			src = made[r.from]
		}
		made[r.index] = scaleTo(src, r.w, r.h)
		buf.Reset()
		if err := EncodeJPEG(&buf, made[r.index]); err != nil {
			return Info{}, nil, &failure{CodeInternal, "the thumbnails could not be rendered", err}
		}
		key := ThumbnailKey(w.cfg.ThumbnailPrefix, up.PhotoID, size.Name)
		if err := w.cfg.Store.Put(ctx, key, &buf); err != nil {
			return Info{}, nil, err
		}
		thumbs[r.index] = Thumbnail{Size: size.Name, Key: key, Width: r.w, Height: r.h}
	}
	return info, thumbs, nil
}

// renderStep renders sizes[index] at w×h from the original (from < 0) or
// from the thumbnail of sizes[from], rendered earlier.
type renderStep struct {
	index, from int
	w, h        int
}

// renderPlan orders the sizes largest first and picks for each the smallest
// thumbnail already rendered that is at least as large in both dimensions as
// its source: scaling cost grows with the source size (see MakeThumbnail), so
// a 12-megapixel photo is scaled once, to the largest size. The dimensions of
// each thumbnail are those MakeThumbnail gives from the original.
func renderPlan(b image.Rectangle, sizes []ThumbnailSize) []renderStep {
	steps := make([]renderStep, len(sizes))
	for i, s := range sizes {
		w, h := fit(b.Dx(), b.Dy(), s.MaxWidth, s.MaxHeight)
		steps[i] = renderStep{index: i, from: -1, w: w, h: h}
	}
	slices.SortStableFunc(steps, func(a, b renderStep) int { return b.w*b.h - a.w*a.h })
	for i := range steps {
		for j := i - 1; j >= 0; j-- {
			if steps[j].w >= steps[i].w && steps[j].h >= steps[i].h {
				steps[i].from = steps[j].index
				break
			}
		}
	}
	return steps
}

// scaleTo returns src scaled to w×h with Catmull-Rom, or copied when it
// already has that size.
func scaleTo(src image.Image, w, h int) *image.RGBA {
	b := src.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	if b.Dx() == w && b.Dy() == h {
		draw.Draw(dst, dst.Bounds(), src, b.Min, draw.Src)
		return dst
	}
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, b, draw.Src, nil)
	return dst
}

// derivedNamespace is the UUID namespace of the ids derived by derivedID.
var derivedNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/shared-infra/eventbus/photo"))

// derivedID returns the id of the event of type typ published in response to
// the event with id cause: the same inputs give the same id, so a consumer
// that deduplicates by event id is not fooled by a redelivery of cause.
func derivedID(cause, typ string) string {
	return uuid.NewSHA1(derivedNamespace, []byte(cause+"\x00"+typ)).String()
}

// RegisterNotifier registers on r the handlers HandlerNotifyCompleted and
// HandlerNotifyFailed, which turn TypeProcessingCompleted and
// TypeProcessingFailed into a TypeNotification for the photo's owner:
// addressed with bus.WithUser(ownerId) (so it is also written to the push
// stream that the gateway delivers to browsers), with the photo id as
// subject. The notification's id is derived from the event it answers, so a
// redelivery gives the same id. An event without an owner cannot be
// addressed and is dead-lettered. opts apply to both handlers.
func RegisterNotifier(r *router.Router, opts ...router.HandlerOption) error {
	// A user never gets two notifications for one photo: the handlers run
	// once per event (WithDedup) and a repeated notification id is not
	// written again (publisher deduplication).
	opts = append([]router.HandlerOption{router.WithDedup(0)}, opts...)
	pub := r.Publisher()
	notify := func(ctx context.Context, eventID, owner string, n Notification) error {
		if owner == "" {
			return middleware.Permanent(fmt.Errorf("photo: event %s about photo %q has no ownerId: the notification cannot be addressed", eventID, n.PhotoID))
		}
		_, err := bus.Publish(ctx, pub, TypeNotification, n,
			bus.WithUser(owner), bus.WithSubject(n.PhotoID), bus.WithID(derivedID(eventID, TypeNotification)))
		return err
	}
	err := router.Handle(r, HandlerNotifyCompleted, TypeProcessingCompleted, func(ctx context.Context, ev bus.Event[ProcessingCompleted]) error {
		c := ev.Data
		return notify(ctx, ev.ID, c.OwnerID, Notification{
			PhotoID:    c.PhotoID,
			Status:     StatusCompleted,
			Message:    completedMessage(c),
			Thumbnails: c.Thumbnails,
		})
	}, opts...)
	if err != nil {
		return err
	}
	return router.Handle(r, HandlerNotifyFailed, TypeProcessingFailed, func(ctx context.Context, ev bus.Event[ProcessingFailed]) error {
		f := ev.Data
		return notify(ctx, ev.ID, f.OwnerID, Notification{
			PhotoID: f.PhotoID,
			Status:  StatusFailed,
			Message: failedMessage(f),
		})
	}, opts...)
}

func completedMessage(c ProcessingCompleted) string {
	n := len(c.Thumbnails)
	plural := "s"
	if n == 1 {
		plural = ""
	}
	return fmt.Sprintf("Your photo is ready: %dx%d %s, %d thumbnail%s.", c.Width, c.Height, strings.ToUpper(c.Format), n, plural)
}

func failedMessage(f ProcessingFailed) string {
	if f.Reason == "" {
		return "Your photo could not be processed."
	}
	return "Your photo could not be processed: " + f.Reason + "."
}

// RegisterCleanup registers on r the handler HandlerCleanup for TypeDeleted,
// which deletes every thumbnail of the photo: the keys under
// "<thumbnailPrefix>/<photoId>/" ("" means DefaultThumbnailPrefix; use the
// worker's ThumbnailPrefix). It publishes nothing. Deleting is idempotent, so
// a redelivery is harmless; a store error is returned (retried). An event
// whose photo id cannot be part of a key is dead-lettered.
func RegisterCleanup(r *router.Router, store Store, thumbnailPrefix string, opts ...router.HandlerOption) error {
	if store == nil {
		return errors.New("photo: RegisterCleanup: store is nil")
	}
	if err := validThumbnailPrefix(thumbnailPrefix); err != nil {
		return fmt.Errorf("photo: RegisterCleanup: %w", err)
	}
	if thumbnailPrefix == "" {
		thumbnailPrefix = DefaultThumbnailPrefix
	}
	logger := r.Bus().Logger()
	return router.Handle(r, HandlerCleanup, TypeDeleted, func(ctx context.Context, ev bus.Event[Deleted]) error {
		id := ev.Data.PhotoID
		if err := checkPhotoID(id); err != nil {
			return middleware.Permanent(fmt.Errorf("photo: %s event %s: %w", TypeDeleted, ev.ID, err))
		}
		keys, err := store.List(ctx, thumbnailPrefix+"/"+id+"/")
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := store.Delete(ctx, k); err != nil {
				return err
			}
		}
		logger.Info("Deleted the thumbnails of a photo", watermill.LogFields{"photo_id": id, "thumbnails": len(keys), "event_id": ev.ID})
		return nil
	}, opts...)
}
