package observe

import (
	"context"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// subTracker knows which handler subscriptions are open: it decorates every
// handler's subscriber (a Watermill subscriber decorator) and follows each
// Subscribe's channel until it closes. A subscription is tied to its handler
// by the handler name Watermill puts in each message's context; until its
// first message it is known only by its topic (the handler's pattern).
//
// Why not ask the router: router.Router does not expose whether a handler
// runs, and Watermill's own Router.Handlers reads its map without a lock.
// See the hook proposed in docs/observability.md.
type subTracker struct {
	mu   sync.Mutex
	open map[*trackedSub]struct{}
}

type trackedSub struct {
	topic   string
	handler string // guarded by subTracker.mu; "" until the first message
}

func newSubTracker() *subTracker { return &subTracker{open: map[*trackedSub]struct{}{}} }

func (t *subTracker) decorate(sub message.Subscriber) (message.Subscriber, error) {
	return trackingSubscriber{Subscriber: sub, t: t}, nil
}

func (t *subTracker) add(s *trackedSub) {
	t.mu.Lock()
	t.open[s] = struct{}{}
	t.mu.Unlock()
}

func (t *subTracker) remove(s *trackedSub) {
	t.mu.Lock()
	delete(t.open, s)
	t.mu.Unlock()
}

func (t *subTracker) bind(s *trackedSub, handler string) {
	t.mu.Lock()
	s.handler = handler
	t.mu.Unlock()
}

// consuming tells, for each handler (name -> pattern), whether it has an
// open subscription. A handler bound to an open subscription is consuming.
// The others of one pattern share that pattern's unbound subscriptions: if
// there are as many as handlers, all consume; if fewer, some handler of the
// pattern does not, and which one cannot be told, so none is reported as
// consuming (readiness fails, as it must). (The router's internal keep-alive
// handler subscribes to "idle" and never gets a message: a user handler on
// the pattern "idle" is counted as consuming while either one is open.)
func (t *subTracker) consuming(handlers map[string]string) map[string]bool {
	t.mu.Lock()
	bound := map[string]bool{}
	unbound := map[string]int{}
	for s := range t.open {
		if s.handler != "" {
			bound[s.handler] = true
		} else {
			unbound[s.topic]++
		}
	}
	t.mu.Unlock()
	out := make(map[string]bool, len(handlers))
	waiting := map[string][]string{} // pattern -> handlers not bound
	for name, pattern := range handlers {
		if bound[name] {
			out[name] = true
			continue
		}
		waiting[pattern] = append(waiting[pattern], name)
	}
	for pattern, names := range waiting {
		ok := unbound[pattern] >= len(names)
		for _, n := range names {
			out[n] = ok
		}
	}
	return out
}

// trackingSubscriber forwards a subscription's messages (as Watermill's own
// MessageTransformSubscriberDecorator does) and records it as open until its
// channel closes.
type trackingSubscriber struct {
	message.Subscriber
	t *subTracker
}

func (s trackingSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	in, err := s.Subscriber.Subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	ts := &trackedSub{topic: topic}
	s.t.add(ts)
	out := make(chan *message.Message)
	go func() {
		bound := false
		for msg := range in {
			if !bound && msg != nil {
				if name := message.HandlerNameFromCtx(msg.Context()); name != "" {
					s.t.bind(ts, name)
					bound = true
				}
			}
			out <- msg
		}
		s.t.remove(ts)
		close(out)
	}()
	return out, nil
}

// routerState reads the Watermill router's state without blocking:
// message.Router.IsClosed takes a lock that Close holds while it drains
// handlers (up to its CloseTimeout), so a probe that called it directly would
// hang for as long. A router whose IsClosed does not answer within
// closeProbeWait is closing.
type routerState struct {
	wm interface {
		IsRunning() bool
		IsClosed() bool
	}

	mu      sync.Mutex
	closed  bool
	pending chan bool // the probe in progress, if any
}

const closeProbeWait = 100 * time.Millisecond

// RouterStatus values of RouterCheck.Detail.
const (
	RouterNotStarted = "not started"
	RouterRunning    = "running"
	RouterClosing    = "closing"
	RouterClosed     = "closed"
)

func (s *routerState) get() string {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return RouterClosed
	}
	ch := s.pending
	if ch == nil {
		ch = make(chan bool, 1)
		s.pending = ch
		go func() {
			closed := s.wm.IsClosed()
			s.mu.Lock()
			s.closed = s.closed || closed
			s.pending = nil
			s.mu.Unlock()
			ch <- closed
			close(ch)
		}()
	}
	s.mu.Unlock()
	t := time.NewTimer(closeProbeWait)
	defer t.Stop()
	select {
	case closed, ok := <-ch:
		if closed || !ok && s.isClosed() {
			return RouterClosed
		}
	case <-t.C:
		return RouterClosing
	}
	if s.wm.IsRunning() {
		return RouterRunning
	}
	return RouterNotStarted
}

func (s *routerState) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
