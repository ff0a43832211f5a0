package middleware

import (
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cenkalti/backoff/v5"
)

// MetaAttempt is the metadata key holding the number of the current attempt
// within one delivery ("1" for the first).
const MetaAttempt = "_eventbus_attempt"

// Retry retries a failing handler with exponential backoff and jitter.
// Permanent errors (see Permanent) are not retried, and each attempt's
// number is in the message metadata (MetaAttempt) for the dead-letter entry
// and the logs.
//
// It is a loop of its own rather than Watermill's middleware.Retry, whose
// backoff.Retry machinery (an ExponentialBackOff, option closures and their
// frames) every event would pay for on its handler goroutine, although
// nearly every event succeeds at once; here a success costs one call and a
// metadata write, and the backoff (cenkalti/backoff, as Watermill's) is made
// only after a failure. The log line of a retry is Watermill's, with the
// event's fields.
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

// Middleware implements message.HandlerMiddleware. An attempt is made only
// while the message's context is live: once it is done (the router is
// closing) the loop returns its error, and the event stays pending.
func (r Retry) Middleware(h message.HandlerFunc) message.HandlerFunc {
	r = r.withDefaults()
	return func(msg *message.Message) ([]*message.Message, error) {
		ctx := msg.Context()
		var wait *backoff.ExponentialBackOff
		for attempt := 1; ; attempt++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			msg.Metadata.Set(MetaAttempt, strconv.Itoa(attempt))
			out, err := h(msg)
			if err == nil || IsPermanent(err) || attempt >= r.MaxAttempts {
				return out, err
			}
			if wait == nil {
				wait = &backoff.ExponentialBackOff{
					InitialInterval: r.InitialInterval, MaxInterval: r.MaxInterval,
					Multiplier: r.Multiplier, RandomizationFactor: r.Jitter,
				}
			}
			d := wait.NextBackOff()
			if r.Logger != nil {
				r.Logger.Error("Error occurred, retrying", err, EventLogFields(msg).Add(watermill.LogFields{
					"retry_no": attempt, "max_retries": r.MaxAttempts - 1, "wait_time": d,
				}))
			}
			if r.OnRetry != nil {
				r.OnRetry(msg, attempt, err)
			}
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			}
		}
	}
}

// Attempts returns the attempt number recorded by Retry (0 when none).
func Attempts(msg *message.Message) int {
	n, _ := strconv.Atoi(msg.Metadata.Get(MetaAttempt))
	return n
}
