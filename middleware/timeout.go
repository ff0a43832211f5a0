package middleware

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Timeout is a hard timeout for each handler attempt: the message's context
// is cancelled at the deadline and the attempt fails with ErrTimeout at the
// deadline even if the handler ignores its context. (Watermill's own Timeout
// middleware only cancels the context.) A handler that ignores its context
// keeps running in its goroutine until it returns; its result is discarded.
// That goroutine gets a copy of the message, so the retry that follows never
// races with it; the router acks or nacks the original.
func Timeout(d time.Duration) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		if d <= 0 {
			return h
		}
		return func(msg *message.Message) ([]*message.Message, error) {
			parent := msg.Context()
			ctx, cancel := context.WithTimeout(parent, d)
			defer cancel()
			attempt := msg.Copy()
			attempt.SetContext(ctx)

			type result struct {
				msgs []*message.Message
				err  error
			}
			done := make(chan result, 1)
			go func() {
				defer func() {
					if r := recover(); r != nil {
						done <- result{err: fmt.Errorf("panic in handler: %v", r)}
					}
				}()
				msgs, err := h(attempt)
				done <- result{msgs, err}
			}()
			select {
			case r := <-done:
				return r.msgs, r.err
			case <-ctx.Done():
				select {
				case r := <-done: // it finished as the context ended: keep its result
					return r.msgs, r.err
				default:
				}
				if parent.Err() != nil {
					return nil, parent.Err()
				}
				return nil, fmt.Errorf("%w after %s", ErrTimeout, d)
			}
		}
	}
}
