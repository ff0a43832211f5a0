// Package photo is the photo-processing pipeline: the event types and their
// JSON payloads, a JSON Schema (draft 2020-12) for every payload, a blob
// [Store] with a local-disk implementation, the imaging code that inspects
// uploads and renders thumbnails, and the handler sets that services
// register on their event-bus router to do the work.
//
// # Events
//
// Every event type has a constant (TypeUploaded, TypeProcessingStarted, ...),
// a payload struct with camelCase JSON tags, and a schema returned by
// [Schemas]. Processing failures carry a user-readable Reason and a machine
// Code; [FailureCode] maps an error returned by this package to that code.
//
// # Imaging
//
// [Inspect] decodes JPEG, PNG and GIF uploads after checking the byte size and
// the declared pixel count, so an oversized or hostile file is rejected before
// it is decoded. Its errors wrap [ErrUnsupportedFormat], [ErrCorrupt] or
// [ErrTooLarge] and their messages are written to be shown to the uploader.
// [MakeThumbnail] fits an image into a [ThumbnailSize] box without upscaling and
// [EncodeJPEG] writes the result.
//
// # Handler sets
//
// A service registers what it does on its [router.Router]:
//
//   - [RegisterWorker]: photo.uploaded → thumbnails in the store, and
//     photo.processing.started, .progress, then .completed or .failed;
//   - [RegisterNotifier]: photo.processing.completed and .failed → a
//     photo.notification addressed to the photo's owner, for the browser;
//   - [RegisterCleanup]: photo.deleted → the photo's thumbnails removed.
//
// Register the photo schemas in the bus's schema registry at start with
// [RegisterSchemas], so that photo events are checked against them by every
// publisher and every router on the bus:
//
//	err := photo.RegisterSchemas(ctx, b)
//	...
//	r, err := router.New(b, router.Config{}, logger)
//	...
//	err = photo.RegisterWorker(r, photo.WorkerConfig{Store: store})
//
// Several instances of a service that register the same set share its
// consumer groups and split the events between them.
//
// # Concurrency
//
// All functions in this package are safe to call from many goroutines at once;
// none of them keeps global state. The handlers run as the router runs them:
// one event at a time per handler unless router.WithConcurrency says more. A [DiskStore] is safe for concurrent use:
// concurrent Put calls for the same key each replace the file atomically, so a
// reader sees one complete version, and the last rename wins.
package photo
