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
//
// The first attempt runs here, outside Watermill's Retry; only a failure
// enters it, and it gets that first result back as its own first attempt,
// so the retries, their backoff and ShouldRetry are Watermill's exactly as
// if it had made the first call. Why: nearly every event succeeds at once,
// and the handler chain runs on a new goroutine per event whose stack grows
// by copying — Watermill's Retry and its backoff loop add a kilobyte of
// frames and a few allocations to every event (docs/benchmarks.md).
func (r Retry) Middleware(h message.HandlerFunc) message.HandlerFunc {
	r = r.withDefaults()
	return func(msg *message.Message) ([]*message.Message, error) {
		if msg.Context().Err() != nil {
			return r.retry(msg, h, nil) // Watermill's Retry does not call h
		}
		msg.Metadata.Set(MetaAttempt, "1")
		out, err := h(msg)
		if err == nil || IsPermanent(err) {
			return out, err
		}
		return r.retry(msg, h, &result{out, err})
	}
}

// result is what one attempt returned.
type result struct {
	msgs []*message.Message
	err  error
}

// retry runs h for msg under Watermill's Retry. first, when set, is the
// result of the first attempt, already made: Watermill's first call gets it.
func (r Retry) retry(msg *message.Message, h message.HandlerFunc, first *result) ([]*message.Message, error) {
	attempt := 0
	if first != nil {
		attempt = 1
	}
	counted := func(m *message.Message) ([]*message.Message, error) {
		if first != nil {
			f := first
			first = nil
			return f.msgs, f.err
		}
		attempt++
		m.Metadata.Set(MetaAttempt, strconv.Itoa(attempt))
		return h(m)
	}
	var logger watermill.LoggerAdapter
	if r.Logger != nil {
		// Watermill's "Error occurred, retrying" line has no event fields of its own.
		logger = eventLogger{r.Logger, msg}
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

// Attempts returns the attempt number recorded by Retry (0 when none).
func Attempts(msg *message.Message) int {
	n, _ := strconv.Atoi(msg.Metadata.Get(MetaAttempt))
	return n
}

// eventLogger adds EventLogFields(msg) to every line it logs. It computes
// them only when it logs (a retry), not for every event handled.
type eventLogger struct {
	base watermill.LoggerAdapter
	msg  *message.Message
}

func (l eventLogger) fields(f watermill.LogFields) watermill.LogFields {
	return EventLogFields(l.msg).Add(f)
}

func (l eventLogger) Error(m string, err error, f watermill.LogFields) {
	l.base.Error(m, err, l.fields(f))
}
func (l eventLogger) Info(m string, f watermill.LogFields)  { l.base.Info(m, l.fields(f)) }
func (l eventLogger) Debug(m string, f watermill.LogFields) { l.base.Debug(m, l.fields(f)) }
func (l eventLogger) Trace(m string, f watermill.LogFields) { l.base.Trace(m, l.fields(f)) }
func (l eventLogger) With(f watermill.LogFields) watermill.LoggerAdapter {
	return eventLogger{l.base.With(f), l.msg}
}
