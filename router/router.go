package router

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/middleware"
)

// ErrHandlerExists and ErrNoHandler report AddHandler and RemoveHandler misuse.
var (
	ErrHandlerExists = errors.New("handler already exists")
	ErrNoHandler     = errors.New("no such handler")
	ErrNotRunning    = errors.New("router is not running")
)

// HandlerFunc handles one event. Returning nil acks it; an error is retried
// with backoff and, after the last attempt, dead-lettered. Wrap an error in
// middleware.Permanent to dead-letter at once. Publish follow-up events with
// ctx (through the bus's Publisher, which r.Publisher returns too), so they
// carry the trace and correlation.
type HandlerFunc func(ctx context.Context, msg *message.Message) error

// Router is a Watermill router with the bus's default middleware stack.
type Router struct {
	bus       *bus.Bus
	cfg       Config
	logger    watermill.LoggerAdapter
	wm        *message.Router
	tracing   *middleware.Tracing
	validator *middleware.Validator

	mu       sync.Mutex
	handlers map[string]*handlerEntry
	runCtx   context.Context
}

type handlerEntry struct {
	h       *message.Handler
	sub     *bus.Subscriber
	pattern string
}

// idleHandler keeps the Watermill router alive with no user handler (it
// closes itself when its last handler stops), so handlers can come and go.
const idleHandler = "$idle"

// New returns a router consuming from b. A nil logger logs nothing.
func New(b *bus.Bus, cfg Config, logger watermill.LoggerAdapter) (*Router, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	wm, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, logger)
	if err != nil {
		return nil, err
	}
	v := middleware.NewValidator(b.Schemas())
	v.AllowLegacy = cfg.AllowLegacy
	tr := middleware.NewTracing(b.Config().TracerProvider, bus.ServerAttributes(b.Client())...)
	r := &Router{
		bus: b, cfg: cfg, logger: logger, wm: wm, tracing: tr, validator: v,
		handlers: map[string]*handlerEntry{},
	}
	wm.AddConsumerHandler(idleHandler, "idle", idleSubscriber{}, func(*message.Message) error { return nil })
	return r, nil
}

// Publisher returns the bus's Publisher: the router has no publisher of its
// own. Whatever publisher a handler uses, an event published with the
// handler's ctx (msg.SetContext(ctx)) carries the trace context and the
// correlation/causation ids of the event being handled, and is checked
// against its type's schema.
func (r *Router) Publisher() *bus.Publisher { return r.bus.Publisher() }

// Bus returns the bus the router consumes from.
func (r *Router) Bus() *bus.Bus { return r.bus }

// Stats returns a snapshot of every handler's counters.
func (r *Router) Stats() map[string]middleware.HandlerStats { return r.cfg.Stats.Snapshot() }

// StatsCollector returns the router's stats collector.
func (r *Router) StatsCollector() *middleware.Stats { return r.cfg.Stats }

// Watermill returns the underlying Watermill router, for plugins and
// decorators (for example Watermill's Prometheus metrics).
func (r *Router) Watermill() *message.Router { return r.wm }

// ConsumerGroup returns the consumer group of the handler name.
func (r *Router) ConsumerGroup(name string) string { return r.bus.Config().ServiceName + "." + name }

// Handlers returns the registered handlers and their patterns.
func (r *Router) Handlers() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.handlers))
	for n, e := range r.handlers {
		out[n] = e.pattern
	}
	return out
}

// Consuming reports, for each handler, whether its subscription is open:
// the router runs it and it reads its streams. A handler added before Run,
// or whose subscription ended (its Redis group could not be read at start,
// the router closes), is not consuming.
func (r *Router) Consuming() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]bool, len(r.handlers))
	for n, e := range r.handlers {
		out[n] = e.sub.Subscriptions() > 0
	}
	return out
}

// AddHandler registers fn for events whose type matches pattern (an event
// type, or a pattern such as "photo.*" or "photo.>"). name identifies the
// handler ([a-z0-9_-], unique in the router) and its consumer group. A
// handler added while the router runs starts at once.
func (r *Router) AddHandler(name, pattern string, fn HandlerFunc, opts ...HandlerOption) error {
	if err := bus.ValidateType(name); err != nil || len(name) > 100 || containsDot(name) {
		return fmt.Errorf("invalid handler name %q: use 1-100 characters of [a-z0-9_-]", name)
	}
	if err := bus.ValidatePattern(pattern); err != nil {
		return err
	}
	o := handlerOptions{}
	for _, opt := range opts {
		opt(&o)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.handlers[name]; ok {
		return fmt.Errorf("%w: %s", ErrHandlerExists, name)
	}
	scfg := r.cfg.Subscriber
	scfg.ConsumerGroup = r.ConsumerGroup(name)
	if o.concurrency > 0 {
		scfg.Concurrency = o.concurrency
	}
	if o.startFrom != "" {
		scfg.StartFrom = o.startFrom
	}
	var dedup message.HandlerMiddleware
	if o.dedup {
		store, err := middleware.NewRedisHandledStore(r.bus.Client(), r.bus.Config().StreamPrefix, o.dedupWindow)
		if err != nil {
			return fmt.Errorf("handler %s: WithDedup: %w", name, err)
		}
		st := r.cfg.Stats
		dedup = middleware.Dedup{Store: store, Logger: r.logger, OnDuplicate: func(*message.Message) { st.Duplicate(name) }}.Middleware
	}
	sub, err := r.bus.NewSubscriber(scfg)
	if err != nil {
		return err
	}
	h := r.wm.AddConsumerHandler(name, pattern, sub, func(msg *message.Message) error {
		return fn(msg.Context(), msg)
	})
	h.AddMiddleware(r.stack(name, o, dedup)...)
	r.handlers[name] = &handlerEntry{h: h, sub: sub, pattern: pattern}
	if r.runCtx != nil {
		if err := r.wm.RunHandlers(r.runCtx); err != nil {
			return err
		}
	}
	return nil
}

func containsDot(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return true
		}
	}
	return false
}

// stack is the default middleware of handler name, outermost first, in the
// order an event needs it (docs/architecture.md, "The router stack"):
//
//   - stats: receipt to ack or nack, so it sees the final outcome;
//   - dead letter: the decision on a failed event, once its attempts are over;
//   - max deliveries and validation: events that must not reach the handler
//     at all fail permanently here (dead-lettered at once, never retried);
//   - filter: skipped events are acked and counted now, without an error
//     travelling back through the layers;
//   - dedup (WithDedup): checked once per delivery, marked after the attempt
//     that succeeds;
//   - retry, then per attempt: tracing (a span per attempt), attempt stats,
//     and the hard timeout with the panic recoverer, around the handler only
//     (Config.Middleware inside it).
func (r *Router) stack(name string, o handlerOptions, dedup message.HandlerMiddleware) []message.HandlerMiddleware {
	st := r.cfg.Stats
	retry := r.cfg.Retry
	if o.maxAttempts > 0 {
		retry.MaxAttempts = o.maxAttempts
	}
	retry.Logger = r.logger
	retry.OnRetry = func(*message.Message, int, error) { st.Retried(name) }
	timeout := r.cfg.HandlerTimeout
	if o.timeout != 0 {
		timeout = o.timeout
	}
	mws := []message.HandlerMiddleware{
		st.Middleware(name),
		middleware.DeadLetter{
			Queue: r.bus.DeadLetters(), Handler: name, Logger: r.logger,
			OnDeadLetter: func(*message.Message, error) { st.DeadLettered(name) },
		}.Middleware,
		middleware.MaxDeliveries(r.cfg.MaxDeliveries),
		validate(st, name, r.validator),
	}
	if o.filter != nil {
		mws = append(mws, filter(st, name, o.filter))
	}
	if dedup != nil {
		mws = append(mws, dedup)
	}
	mws = append(mws,
		retry.Middleware,
		r.tracing.Middleware,
		st.AttemptMiddleware(name),
		middleware.Timeout(timeout),
	)
	return append(mws, r.cfg.Middleware...)
}

// filter acks the events keep refuses (success, the handler not called) and
// counts them as filtered.
func filter(st *middleware.Stats, name string, keep func(*message.Message) bool) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			if !keep(msg) {
				st.Filtered(name)
				return nil, nil
			}
			return h(msg)
		}
	}
}

// validate rejects invalid events permanently (so they are dead-lettered at
// once, with the reason) and counts each as a failure of the handler. A
// Redis error while reading a schema version is retried.
func validate(st *middleware.Stats, name string, v *middleware.Validator) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			if err := v.Validate(msg); err != nil {
				st.Failed(name)
				if errors.Is(err, middleware.ErrInvalidEvent) {
					return nil, middleware.Permanent(err)
				}
				return nil, err
			}
			return h(msg)
		}
	}
}

// RemoveHandler stops handler name (unsubscribe): it finishes the events in
// flight, stops consuming all its streams and closes its subscriber. Its
// consumer group stays in Redis, so adding it again resumes where it stopped.
func (r *Router) RemoveHandler(name string) error {
	r.mu.Lock()
	e, ok := r.handlers[name]
	running := r.runCtx != nil
	if ok && running {
		delete(r.handlers, name)
	}
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoHandler, name)
	}
	if !running {
		return fmt.Errorf("%w: remove handlers after Run has started", ErrNotRunning)
	}
	e.h.Stop()
	<-e.h.Stopped()
	return e.sub.Close()
}

// Run runs the router until ctx is done or Close is called; it blocks.
func (r *Router) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.runCtx != nil {
		r.mu.Unlock()
		return errors.New("router is already running")
	}
	r.runCtx = ctx
	r.mu.Unlock()
	err := r.wm.Run(ctx)
	r.closeSubscribers()
	return err
}

// Running is closed once the router runs.
func (r *Router) Running() chan struct{} { return r.wm.Running() }

// Close stops taking new events, waits up to CloseTimeout for handlers in
// flight (their acks are written; unfinished events stay pending for another
// instance) and closes the handlers' subscribers. Safe to call twice.
func (r *Router) Close() error {
	err := r.wm.Close()
	r.closeSubscribers()
	return err
}

func (r *Router) closeSubscribers() {
	r.mu.Lock()
	entries := make([]*handlerEntry, 0, len(r.handlers))
	for _, e := range r.handlers {
		entries = append(entries, e)
	}
	r.mu.Unlock()
	for _, e := range entries {
		_ = e.sub.Close()
	}
}

// idleSubscriber never delivers anything; see idleHandler.
type idleSubscriber struct{}

func (idleSubscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	ch := make(chan *message.Message)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}

func (idleSubscriber) Close() error { return nil }
