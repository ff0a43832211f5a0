package middleware

import (
	"errors"
	"fmt"
)

var (
	// ErrTimeout is returned (wrapped) when a handler attempt passes its deadline.
	ErrTimeout = errors.New("handler timed out")
	// ErrTooManyDeliveries is returned when Redis has delivered an event more
	// times than allowed (the process crashed or was killed while handling it).
	ErrTooManyDeliveries = errors.New("too many deliveries")
	// ErrInvalidEvent is returned (wrapped, permanent) for an event that fails validation.
	ErrInvalidEvent = errors.New("invalid event")
)

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: Retry gives up at once and
// DeadLetter dead-letters the event. A handler returns Permanent(err) for an
// event it can never process (bad input), plain err for a transient failure.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

func permanentf(format string, args ...any) error { return Permanent(fmt.Errorf(format, args...)) }
