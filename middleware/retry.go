package middleware

import (
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmmw "github.com/ThreeDotsLabs/watermill/message/router/middleware"
)

// MetaAttempt is the metadata key holding the number of the current attempt
// within one delivery ("1" for the first).
const MetaAttempt = "_eventbus_attempt"

// Retry retries a failing handler with exponential backoff and jitter. It
// wraps Watermill's Retry, adding: permanent errors (see Permanent) are not
// retried, and each attempt's number is in the message metadata (MetaAttempt)
// for the dead-letter entry and the logs.
type Retry struct {
	// MaxAttempts is the total number of attempts, the first included.
	// Default 3; 1 means no retry.
	MaxAttempts int
	// InitialInterval is the wait before the first retry. Default 100ms.
	InitialInterval time.Duration
	// MaxInterval caps the wait between attempts. Default 5s.
	MaxInterval time.Duration
	// Multiplier grows the wait after each retry. Default 2.
	Multiplier float64
	// Jitter randomizes each wait by ±Jitter (0.2 = ±20%). Default 0.2; -1 none.
	Jitter float64
	// OnRetry, when set, is called before each retry.
	OnRetry func(msg *message.Message, attempt int, err error)
	Logger  watermill.LoggerAdapter
}

func (r Retry) withDefaults() Retry {
	if r.MaxAttempts == 0 {
		r.MaxAttempts = 3
	}
	if r.InitialInterval == 0 {
		r.InitialInterval = 100 * time.Millisecond
	}
	if r.MaxInterval == 0 {
		r.MaxInterval = 5 * time.Second
	}
	if r.Multiplier == 0 {
		r.Multiplier = 2
	}
	switch {
	case r.Jitter == 0:
		r.Jitter = 0.2
	case r.Jitter < 0:
		r.Jitter = 0
	}
	return r
}

// Middleware implements message.HandlerMiddleware.
func (r Retry) Middleware(h message.HandlerFunc) message.HandlerFunc {
	r = r.withDefaults()
	return func(msg *message.Message) ([]*message.Message, error) {
		attempt := 0
		counted := func(m *message.Message) ([]*message.Message, error) {
			attempt++
			m.Metadata.Set(MetaAttempt, strconv.Itoa(attempt))
			return h(m)
		}
		var logger watermill.LoggerAdapter
		if r.Logger != nil {
			// Watermill's "Error occurred, retrying" line has no event fields of its own.
			logger = r.Logger.With(EventLogFields(msg))
		}
		wm := wmmw.Retry{
			MaxRetries:          r.MaxAttempts - 1,
			InitialInterval:     r.InitialInterval,
			MaxInterval:         r.MaxInterval,
			Multiplier:          r.Multiplier,
			RandomizationFactor: r.Jitter,
			Logger:              logger,
			ShouldRetry: func(p wmmw.RetryParams) bool {
				if IsPermanent(p.Err) {
					return false
				}
				if r.OnRetry != nil && attempt < r.MaxAttempts {
					r.OnRetry(msg, attempt, p.Err)
				}
				return true
			},
		}
		return wm.Middleware(counted)(msg)
	}
}

// Attempts returns the attempt number recorded by Retry (0 when none).
func Attempts(msg *message.Message) int {
	n, _ := strconv.Atoi(msg.Metadata.Get(MetaAttempt))
	return n
}
