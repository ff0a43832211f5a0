package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/shared-infra/eventbus/bus"
)

// The idle round-trip variants: publish one event, wait until the handler
// has seen it, repeat.
const (
	// LatencyRedisstream is redisstream's publisher and subscriber, plain router.
	LatencyRedisstream = "redisstream"
	// LatencyBus is the bus's publisher and subscriber, plain router.
	LatencyBus = "bus"
)

// LatencyVariants are the idle round-trip variants, baseline first.
var LatencyVariants = []string{LatencyRedisstream, LatencyBus}

// RoundTripper is an idle round-trip variant, set up and running: its
// router waits for events, one at a time. Close it when done.
type RoundTripper struct {
	// Name is the variant.
	Name string

	publish func() error
	seen    chan struct{}
	r       runner
	errc    chan error
	timer   *time.Timer
	closers closers
}

// NewRoundTripper sets up the round-trip variant name on t, starts its
// router and makes one round trip (so the subscription is running and the
// connections are open before the first measured trip).
func NewRoundTripper(ctx context.Context, t *Target, name string) (*RoundTripper, error) {
	rt := &RoundTripper{Name: name, seen: make(chan struct{}, 1)}
	handler := func(*message.Message) error {
		select {
		case rt.seen <- struct{}{}:
		default: // one event in flight at a time: only a late duplicate gets here
		}
		return nil
	}
	var err error
	switch name {
	case LatencyRedisstream:
		err = rt.setupRedisstream(t, handler)
	case LatencyBus:
		err = rt.setupBus(t, handler)
	default:
		return nil, fmt.Errorf("%w: unknown latency variant %q", ErrInvalidOptions, name)
	}
	if err == nil {
		rt.errc = make(chan error, 1)
		go func() { rt.errc <- rt.r.Run(context.Background()) }()
		_, err = rt.Trip(ctx)
	}
	if err != nil {
		_ = rt.Close()
		return nil, fmt.Errorf("set up %s: %w", name, err)
	}
	return rt, nil
}

func (rt *RoundTripper) setupRedisstream(t *Target, handler message.NoPublishHandlerFunc) error {
	pc := t.newClient("")
	rt.closers.add(ignoreErr(pc.Close)) // the publisher closes it
	pub, err := newRedisstreamPublisher(pc)
	if err != nil {
		return err
	}
	rt.closers.add(pub.Close)
	sc := t.newClient("")
	rt.closers.add(ignoreErr(sc.Close)) // the subscriber closes it
	sub, err := newRedisstreamSubscriber(sc)
	if err != nil {
		return err
	}
	rt.closers.add(sub.Close)
	topic := t.prefix + evType
	rt.r, err = newRouter(sub, topic, handler)
	rt.publish = func() error { return pub.Publish(topic, attrMessage(evType)) }
	return err
}

func (rt *RoundTripper) setupBus(t *Target, handler message.NoPublishHandlerFunc) error {
	b, err := openBus(t, &rt.closers, "")
	if err != nil {
		return err
	}
	sub, err := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: group})
	if err != nil {
		return err
	}
	rt.r, err = newRouter(sub, evType, handler)
	pub := b.Publisher()
	rt.publish = func() error { return pub.Publish(evType, busMessage()) }
	return err
}

// Trip publishes one event and returns the time until the handler saw it.
func (rt *RoundTripper) Trip(ctx context.Context) (time.Duration, error) {
	if rt.timer == nil {
		rt.timer = time.NewTimer(waitLimit)
	} else {
		rt.timer.Reset(waitLimit)
	}
	t0 := time.Now()
	if err := rt.publish(); err != nil {
		return 0, err
	}
	select {
	case <-rt.seen:
		return time.Since(t0), nil
	case err := <-rt.errc:
		rt.errc <- err // for Close
		return 0, fmt.Errorf("%s: router stopped: %v", rt.Name, err)
	case <-rt.timer.C:
		return 0, fmt.Errorf("%s: no delivery in %s", rt.Name, waitLimit)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Close stops the router, waits for it to return and closes what the
// variant opened.
func (rt *RoundTripper) Close() error {
	var err error
	if rt.timer != nil {
		rt.timer.Stop()
	}
	if rt.r != nil {
		err = rt.r.Close()
	}
	if rt.errc != nil {
		if runErr := <-rt.errc; runErr != nil && !errors.Is(runErr, context.Canceled) && err == nil {
			err = runErr
		}
		rt.errc = nil
	}
	if cerr := rt.closers.close(); err == nil {
		err = cerr
	}
	return err
}
