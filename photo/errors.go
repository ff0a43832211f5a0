package photo

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them with %w;
// match them with [errors.Is].
var (
	// ErrUnsupportedFormat means the data is not a JPEG, PNG or GIF image, or
	// uses a feature of one of those formats that the decoder does not support.
	ErrUnsupportedFormat = errors.New("unsupported format")
	// ErrCorrupt means the data has the header of a supported format but is
	// truncated or damaged.
	ErrCorrupt = errors.New("corrupt image")
	// ErrTooLarge means the file exceeds ImagingConfig.MaxBytes or its
	// dimensions exceed ImagingConfig.MaxPixels.
	ErrTooLarge = errors.New("too large")
	// ErrNotFound means a Store has no object under the requested key.
	ErrNotFound = errors.New("not found")
	// ErrInvalidKey means a Store key is empty, absolute, escapes the store
	// root or is otherwise malformed.
	ErrInvalidKey = errors.New("invalid key")
)

// FailureCode maps err to the machine code carried by [ProcessingFailed]:
// [CodeCorrupt], [CodeUnsupportedFormat], [CodeTooLarge], [CodeNotFound], or
// [CodeInternal] for any other error. It returns "" for a nil error.
func FailureCode(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrCorrupt):
		return CodeCorrupt
	case errors.Is(err, ErrUnsupportedFormat):
		return CodeUnsupportedFormat
	case errors.Is(err, ErrTooLarge):
		return CodeTooLarge
	case errors.Is(err, ErrNotFound):
		return CodeNotFound
	default:
		return CodeInternal
	}
}
