package observe

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/router"
)

// sampleInterval is how often the error window samples the counters.
const sampleInterval = time.Second

// Observer observes one router: its handlers, its bus's Redis and what its
// bus publishes. Make it with New before the router
// runs; every method is safe for concurrent use.
type Observer struct {
	r      *router.Router
	bus    *bus.Bus
	cfg    Config
	logger watermill.LoggerAdapter
	start  time.Time

	window    *errorWindow
	state     *routerState
	collector *collector
	unhook    func() // removes the collector's OnProcessed hook
	redact    func(string) string

	losses        lossTracker  // for Config.LossDegradedFor
	lastReadiness atomic.Value // Status of the last Readiness, for logging changes

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// New returns an Observer of r. Call it after router.New and before r.Run
// (ErrRouterRunning otherwise): it adds Watermill's Prometheus router metrics
// (when cfg.Registerer is set), and Watermill applies them only to handlers
// that start after they were added. It registers the bus's own metrics on
// cfg.Registerer and starts one goroutine sampling the error window; Close
// stops it. A nil logger logs nothing.
func New(r *router.Router, cfg Config, logger watermill.LoggerAdapter) (*Observer, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: router is nil", ErrInvalidConfig)
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	wm := r.Watermill()
	if wm.IsRunning() {
		return nil, ErrRouterRunning
	}
	o := &Observer{
		r: r, bus: r.Bus(), cfg: cfg, logger: logger, start: time.Now(),
		window:  newErrorWindow(cfg.ErrorWindow),
		state:   &routerState{wm: wm},
		redact:  bus.Redactor(r.Bus().Config().RedisURL, r.Bus().Client()),
		closing: make(chan struct{}),
	}
	if cfg.Registerer != nil {
		o.collector = newCollector(o)
		if err := cfg.Registerer.Register(o.collector); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("register eventbus metrics: %w (one Observer per registry; wrap the Registerer with prometheus.WrapRegistererWith to tell routers apart)", err)
			}
			return nil, fmt.Errorf("register eventbus metrics: %w", err)
		}
		hist := o.collector.processing
		o.unhook = r.StatsCollector().OnProcessed(func(handler string, d time.Duration) {
			hist.WithLabelValues(handler).Observe(d.Seconds())
		})
		metrics.NewPrometheusMetricsBuilder(cfg.Registerer, MetricsNamespace, WatermillSubsystem).AddPrometheusRouterMetrics(wm)
	}
	o.window.add(o.start, r.Stats())
	o.wg.Add(1)
	go o.sample()
	return o, nil
}

// sample feeds the error window once a second until Close.
func (o *Observer) sample() {
	defer o.wg.Done()
	t := time.NewTicker(sampleInterval)
	defer t.Stop()
	for {
		select {
		case <-o.closing:
			return
		case now := <-t.C:
			o.window.add(now, o.r.Stats())
		}
	}
}

// Close stops the error-window sampler and unregisters the bus's metrics
// (Watermill's stay registered: they belong to the router's middleware). It
// never closes the router or the bus. Safe to call more than once.
func (o *Observer) Close() error {
	o.closeOnce.Do(func() {
		close(o.closing)
		o.wg.Wait()
		if o.collector != nil {
			o.unhook()
			o.cfg.Registerer.Unregister(o.collector)
		}
	})
	return nil
}

// Uptime is how long ago New returned the observer.
func (o *Observer) Uptime() time.Duration { return time.Since(o.start) }
