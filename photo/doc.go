// Package photo holds the parts of the photo-processing pipeline that do not
// depend on the event bus: the event types and their JSON payloads, a JSON
// Schema (draft 2020-12) for every payload, a blob [Store] with a local-disk
// implementation, and the imaging code that inspects uploads and renders
// thumbnails.
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
// # Concurrency
//
// All functions in this package are safe to call from many goroutines at once;
// none of them keeps global state. A [DiskStore] is safe for concurrent use:
// concurrent Put calls for the same key each replace the file atomically, so a
// reader sees one complete version, and the last rename wins.
package photo
