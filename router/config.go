package router

import (
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/middleware"
)

// Defaults for Config.
const (
	DefaultHandlerTimeout = 30 * time.Second
	DefaultMaxDeliveries  = 10
	DefaultCloseTimeout   = 30 * time.Second
)

// Config configures a Router. The zero value is usable.
type Config struct {
	// HandlerTimeout is the hard timeout of each attempt. Default
	// DefaultHandlerTimeout; -1 means none.
	HandlerTimeout time.Duration
	// Retry sets attempts and backoff (defaults: 3 attempts, 100ms doubling
	// to 5s, ±20% jitter). Its OnRetry hook is the router's.
	Retry middleware.Retry
	// MaxDeliveries dead-letters an event Redis has delivered more often than
	// this (a handler that kills its process). Default DefaultMaxDeliveries;
	// -1 means no limit.
	MaxDeliveries int
	// Subscriber is the template for each handler's subscriber (batch size,
	// concurrency, claim timings...). Its ConsumerGroup is set per handler.
	Subscriber bus.SubscriberConfig
	// CloseTimeout bounds how long Close waits for in-flight handlers: they
	// keep their context for 90% of it (the drain), then it is cancelled and
	// what has not finished stays pending for another instance.
	// Default DefaultCloseTimeout.
	CloseTimeout time.Duration
	// AllowLegacy lets events without CloudEvents attributes (written by
	// watermill-redisstream's default marshaller) through validation.
	AllowLegacy bool
	// Stats collects per-handler counters; nil makes a new collector.
	Stats *middleware.Stats
	// Middleware is added inside the default stack, just around each handler.
	Middleware []message.HandlerMiddleware
}

func (c *Config) setDefaults() {
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = DefaultHandlerTimeout
	}
	if c.MaxDeliveries == 0 {
		c.MaxDeliveries = DefaultMaxDeliveries
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	// The subscribers' drain ends first (their handlers' contexts are then
	// cancelled), so that handlers return before the Watermill router's own
	// close timeout gives up on them.
	if drain := c.CloseTimeout * 9 / 10; c.Subscriber.CloseTimeout == 0 || c.Subscriber.CloseTimeout > drain {
		c.Subscriber.CloseTimeout = drain
	}
	if c.Stats == nil {
		c.Stats = middleware.NewStats()
	}
}

// Validate reports every problem with the config at once. It never changes c.
func (c Config) Validate() error {
	var errs []error
	if c.HandlerTimeout < -1 {
		errs = append(errs, fmt.Errorf("HandlerTimeout %s: use a positive duration or -1 for none", c.HandlerTimeout))
	}
	if c.Retry.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("Retry.MaxAttempts %d must be at least 1", c.Retry.MaxAttempts))
	}
	if c.MaxDeliveries < -1 {
		errs = append(errs, fmt.Errorf("MaxDeliveries %d: use a positive count or -1 for no limit", c.MaxDeliveries))
	}
	if c.CloseTimeout < 0 {
		errs = append(errs, fmt.Errorf("CloseTimeout %s must not be negative", c.CloseTimeout))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", bus.ErrInvalidConfig, errors.Join(errs...))
}

// HandlerOption configures one handler.
type HandlerOption func(*handlerOptions)

type handlerOptions struct {
	filter      func(*message.Message) bool
	concurrency int
	timeout     time.Duration
	maxAttempts int
	startFrom   string
	dedup       bool          // WithDedup
	dedupWindow time.Duration // 0: middleware.DefaultHandledWindow
}

// WithFilter skips events for which keep returns false: they are acked and
// counted as filtered, never handled.
func WithFilter(keep func(*message.Message) bool) HandlerOption {
	return func(o *handlerOptions) { o.filter = keep }
}

// WithConcurrency lets the handler work on n events at once (default 1: in
// stream order).
func WithConcurrency(n int) HandlerOption { return func(o *handlerOptions) { o.concurrency = n } }

// WithTimeout overrides Config.HandlerTimeout for this handler.
func WithTimeout(d time.Duration) HandlerOption { return func(o *handlerOptions) { o.timeout = d } }

// WithMaxAttempts overrides Config.Retry.MaxAttempts for this handler.
func WithMaxAttempts(n int) HandlerOption { return func(o *handlerOptions) { o.maxAttempts = n } }

// WithStartFrom sets where a new consumer group starts on existing streams:
// "0" (all retained events, the default) or "$" (only new ones).
func WithStartFrom(id string) HandlerOption { return func(o *handlerOptions) { o.startFrom = id } }

// WithDedup runs the handler at most once per event: an event it handled
// (success) is marked in Redis for window (0: middleware.DefaultHandledWindow),
// and a redelivery within it (after a crash between handling and ack, or a
// claim from a dead consumer) is acked without running the handler and
// counted as a duplicate in Stats. See middleware.Dedup.
func WithDedup(window time.Duration) HandlerOption {
	return func(o *handlerOptions) { o.dedup, o.dedupWindow = true, window }
}
