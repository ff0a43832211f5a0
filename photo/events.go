package photo

// Event types of the photo pipeline. The payload of each type is the struct of
// the same name (TypeUploaded carries [Uploaded], and so on) encoded as JSON,
// and [Schemas] holds the JSON Schema each payload must satisfy.
const (
	// TypeUploaded is published when the original file has been stored.
	TypeUploaded = "photo.uploaded"
	// TypeProcessingStarted is published when a worker picks up an upload.
	TypeProcessingStarted = "photo.processing.started"
	// TypeProcessingProgress reports how far processing has got.
	TypeProcessingProgress = "photo.processing.progress"
	// TypeProcessingCompleted is published when every thumbnail is stored.
	TypeProcessingCompleted = "photo.processing.completed"
	// TypeProcessingFailed is published when processing gives up.
	TypeProcessingFailed = "photo.processing.failed"
	// TypeDeleted is published when a photo and its thumbnails are removed.
	TypeDeleted = "photo.deleted"
	// TypeNotification is addressed to one user for delivery to the browser.
	TypeNotification = "photo.notification"
)

// Image formats, as reported by [Inspect] and carried by
// [ProcessingCompleted].Format.
const (
	// FormatJPEG is a JPEG image.
	FormatJPEG = "jpeg"
	// FormatPNG is a PNG image.
	FormatPNG = "png"
	// FormatGIF is a GIF image (only its first frame is processed).
	FormatGIF = "gif"
)

// Failure codes carried by [ProcessingFailed].Code; see [FailureCode].
const (
	// CodeCorrupt: the file is truncated or damaged.
	CodeCorrupt = "corrupt"
	// CodeUnsupportedFormat: the file is not a JPEG, PNG or GIF image.
	CodeUnsupportedFormat = "unsupported_format"
	// CodeTooLarge: the file has too many bytes or pixels.
	CodeTooLarge = "too_large"
	// CodeNotFound: the original is no longer in the store.
	CodeNotFound = "not_found"
	// CodeInternal: anything else; the uploader cannot fix it.
	CodeInternal = "internal"
)

// Notification statuses carried by [Notification].Status.
const (
	// StatusCompleted: the photo was processed and its thumbnails are ready.
	StatusCompleted = "completed"
	// StatusFailed: the photo could not be processed.
	StatusFailed = "failed"
)

// Uploaded is the payload of [TypeUploaded].
type Uploaded struct {
	PhotoID string `json:"photoId"`
	OwnerID string `json:"ownerId"`
	// Key is the storage key of the original file.
	Key string `json:"key"`
	// Filename is the name the uploader gave the file; it is not trusted.
	Filename string `json:"filename"`
	// ContentType is the MIME type the uploader claimed; it is not trusted.
	ContentType string `json:"contentType"`
	// Size is the size of the original in bytes.
	Size int64 `json:"size"`
}

// ProcessingStarted is the payload of [TypeProcessingStarted].
type ProcessingStarted struct {
	PhotoID string `json:"photoId"`
	OwnerID string `json:"ownerId"`
}

// ProcessingProgress is the payload of [TypeProcessingProgress].
type ProcessingProgress struct {
	PhotoID string `json:"photoId"`
	OwnerID string `json:"ownerId"`
	// Percent is between 0 and 100 inclusive.
	Percent int `json:"percent"`
	// Stage names the current step, e.g. "decoding" or "thumbnail:small".
	Stage string `json:"stage"`
}

// Thumbnail describes one stored thumbnail.
type Thumbnail struct {
	// Size is the name of the [ThumbnailSize], e.g. "small".
	Size string `json:"size"`
	// Key is the storage key of the thumbnail.
	Key    string `json:"key"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// ProcessingCompleted is the payload of [TypeProcessingCompleted].
type ProcessingCompleted struct {
	PhotoID string `json:"photoId"`
	OwnerID string `json:"ownerId"`
	// Width and Height are the dimensions of the original.
	Width  int `json:"width"`
	Height int `json:"height"`
	// Format is FormatJPEG, FormatPNG or FormatGIF.
	Format     string      `json:"format"`
	Thumbnails []Thumbnail `json:"thumbnails,omitempty"`
	// DurationMs is how long processing took, in milliseconds.
	DurationMs int64 `json:"durationMs"`
}

// ProcessingFailed is the payload of [TypeProcessingFailed].
type ProcessingFailed struct {
	PhotoID string `json:"photoId"`
	OwnerID string `json:"ownerId"`
	// Reason is a message that can be shown to the uploader.
	Reason string `json:"reason"`
	// Code is one of CodeCorrupt, CodeUnsupportedFormat, CodeTooLarge,
	// CodeNotFound or CodeInternal; see [FailureCode].
	Code string `json:"code"`
}

// Deleted is the payload of [TypeDeleted].
type Deleted struct {
	PhotoID string `json:"photoId"`
	OwnerID string `json:"ownerId"`
}

// Notification is the payload of [TypeNotification], an event addressed to
// one user for delivery to the browser. The payload does not name the
// recipient; the publisher addresses the event (for example in message
// metadata).
type Notification struct {
	PhotoID string `json:"photoId"`
	// Status is StatusCompleted or StatusFailed.
	Status string `json:"status"`
	// Message is shown to the user as is.
	Message string `json:"message"`
	// Thumbnails is set when Status is StatusCompleted.
	Thumbnails []Thumbnail `json:"thumbnails,omitempty"`
}
