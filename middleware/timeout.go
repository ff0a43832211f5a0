package middleware

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Timeout is a hard timeout for each handler attempt, and the recoverer of
// its panics: the message's context is cancelled at the deadline and the
// attempt fails with ErrTimeout at the deadline even if the handler ignores
// its context. (Watermill's own Timeout middleware only cancels the
// context.) A handler that ignores its context keeps running until it
// returns; its result is discarded. It runs on a copy of the message, so
// the retry that follows never races with it; the router acks or nacks the
// original.
//
// To return at the deadline the attempt runs on another goroutine than its
// caller. Those goroutines are kept and reused (one per attempt in progress,
// each ending after workerIdle without work) rather than started per
// attempt: a goroutine per event would double what the router starts for
// each event (docs/architecture.md, "The router stack").
//
// A panic in the handler fails the attempt with an error saying so (the
// event is retried, then dead-lettered with that reason); it has to be
// recovered here, on the goroutine it happens on. With d <= 0 (no timeout)
// the handler runs on the caller's goroutine, and panics are recovered the
// same way.
func Timeout(d time.Duration) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		if d <= 0 {
			return func(msg *message.Message) ([]*message.Message, error) { return recovered(h, msg) }
		}
		w := &workers{h: h, jobs: make(chan attempt)}
		return func(msg *message.Message) ([]*message.Message, error) {
			parent := msg.Context()
			ctx, cancel := context.WithTimeout(parent, d)
			defer cancel()
			a := attempt{msg: msg.Copy(), done: make(chan result, 1)}
			a.msg.SetContext(ctx)
			w.run(a)
			select {
			case r := <-a.done:
				return r.msgs, r.err
			case <-ctx.Done():
				select {
				case r := <-a.done: // it finished as the context ended: keep its result
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

// workerIdle is how long a Timeout worker waits for its next attempt
// before it ends.
const workerIdle = time.Second

// workers runs the attempts of one Timeout middleware on goroutines it
// keeps: an attempt goes to a worker waiting for one, or to a new worker.
type workers struct {
	h    message.HandlerFunc
	jobs chan attempt // unbuffered: a send succeeds only to a waiting worker
}

type attempt struct {
	msg  *message.Message
	done chan result // buffered: a worker never blocks on an abandoned attempt
}

type result struct {
	msgs []*message.Message
	err  error
}

func (w *workers) run(a attempt) {
	select {
	case w.jobs <- a:
	default:
		go w.work(a)
	}
}

func (w *workers) work(a attempt) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		msgs, err := recovered(w.h, a.msg)
		a.done <- result{msgs, err}
		a = attempt{} // let the message go while waiting
		idle.Reset(workerIdle)
		select {
		case a = <-w.jobs:
		case <-idle.C:
			return
		}
	}
}

// recovered calls h, turning a panic into an error.
func recovered(h message.HandlerFunc, msg *message.Message) (msgs []*message.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			msgs, err = nil, fmt.Errorf("panic in handler: %v", r)
		}
	}()
	return h(msg)
}
