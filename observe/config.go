package observe

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shared-infra/eventbus/bus"
)

// Defaults for Config. A zero field takes its default.
const (
	DefaultLagDegradedThreshold int64 = 1000
	DefaultRedisTimeout               = time.Second
	DefaultErrorWindow                = time.Minute
	// MaxErrorWindow is the longest ErrorWindow accepted (one sample a second
	// is kept for each second of it).
	MaxErrorWindow = time.Hour
	// MetricsNamespace prefixes every metric the observer registers; the
	// Watermill metrics get the subsystem WatermillSubsystem beside it.
	MetricsNamespace   = "eventbus"
	WatermillSubsystem = "watermill"
)

// Sentinel errors.
var (
	// ErrInvalidConfig wraps every problem Config.Validate reports. It wraps
	// bus.ErrInvalidConfig, as every package's config errors do.
	ErrInvalidConfig = fmt.Errorf("observe: %w", bus.ErrInvalidConfig)
	// ErrRouterRunning is returned by New for a router that already runs:
	// the Watermill middleware and decorators New adds would miss its handlers.
	ErrRouterRunning = errors.New("router already running: call observe.New before Router.Run")
)

// Config configures an Observer.
type Config struct {
	// Registerer receives the metrics: Watermill's router metrics and the
	// bus's own (see docs/observability.md). Nil means no metrics (Metrics
	// answers 404); no global registry is ever used.
	Registerer prometheus.Registerer
	// Gatherer is what Metrics serves. Default: Registerer, when it is also a
	// Gatherer (as *prometheus.Registry is); required otherwise.
	Gatherer prometheus.Gatherer

	// LagDegradedThreshold is the consumer lag (entries not yet delivered to
	// a handler's group, summed over its streams) above which a handler is
	// "degraded": live, but not ready. Default DefaultLagDegradedThreshold
	// (1000); -1 means lag never degrades readiness.
	LagDegradedThreshold int64
	// LossDegradedFor, when set, makes a handler "degraded" for this long
	// after its loss count (entries trimmed before its group read them, see
	// HandlerSnapshot.Lost) is seen to grow by a Readiness call. Default 0:
	// losses are reported in /readyz and /stats but do not change readiness.
	LossDegradedFor time.Duration
	// RedisTimeout bounds the Redis round trips of one Stats, Readiness or
	// scrape. Default DefaultRedisTimeout (1s).
	RedisTimeout time.Duration
	// ErrorWindow is the sliding window of the error rate (failed attempts /
	// deliveries received), sampled once a second. Default DefaultErrorWindow
	// (1m); at least 1s, at most MaxErrorWindow.
	ErrorWindow time.Duration
}

func (c *Config) setDefaults() {
	if c.Gatherer == nil {
		if g, ok := c.Registerer.(prometheus.Gatherer); ok {
			c.Gatherer = g
		}
	}
	if c.LagDegradedThreshold == 0 {
		c.LagDegradedThreshold = DefaultLagDegradedThreshold
	}
	if c.RedisTimeout == 0 {
		c.RedisTimeout = DefaultRedisTimeout
	}
	if c.ErrorWindow == 0 {
		c.ErrorWindow = DefaultErrorWindow
	}
}

// Validate reports every problem with the config at once. It never changes c.
func (c Config) Validate() error {
	var errs []error
	if c.Registerer != nil && c.Gatherer == nil {
		if _, ok := c.Registerer.(prometheus.Gatherer); !ok {
			errs = append(errs, fmt.Errorf("the Registerer %T is not a prometheus.Gatherer: set Gatherer to what /metrics should serve", c.Registerer))
		}
	}
	if c.Registerer == nil && c.Gatherer != nil {
		errs = append(errs, errors.New("the Gatherer is set without a Registerer: set Registerer too (the observer registers its metrics there)"))
	}
	if c.LagDegradedThreshold < -1 {
		errs = append(errs, fmt.Errorf("LagDegradedThreshold %d: use a positive count, 0 for the default or -1 to never degrade on lag", c.LagDegradedThreshold))
	}
	if c.LossDegradedFor < 0 {
		errs = append(errs, fmt.Errorf("LossDegradedFor %s must not be negative", c.LossDegradedFor))
	}
	if c.RedisTimeout < 0 {
		errs = append(errs, fmt.Errorf("RedisTimeout %s must not be negative", c.RedisTimeout))
	}
	if c.ErrorWindow != 0 && (c.ErrorWindow < time.Second || c.ErrorWindow > MaxErrorWindow) {
		errs = append(errs, fmt.Errorf("ErrorWindow %s: use 1s to %s, or 0 for the default", c.ErrorWindow, MaxErrorWindow))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}
