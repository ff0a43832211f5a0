package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons of eventbus_gateway_streams_closed_total.
const (
	closeReasonClientGone   = "client_gone"   // the browser went away or stopped reading
	closeReasonSlowClient   = "slow_client"   // its queue overflowed (errSlowClient)
	closeReasonShutdown     = "shutdown"      // the gateway closed (ErrGatewayClosed)
	closeReasonGap          = "gap"           // the reader lost its place (errPushStreamGap)
	closeReasonTokenExpired = "token_expired" // the token's exp passed (errTokenExpired)
	closeReasonError        = "error"         // a Redis error during replay, or anything else
)

// DefaultStuckAfter is the default of Config.StuckAfter.
const DefaultStuckAfter = 10 * time.Second

// ErrNotReady wraps every reason [Gateway.Ready] gives.
var ErrNotReady = errors.New("gateway: not ready")

// metrics are the gateway's Prometheus metrics (Config.Registerer). Every
// method is safe on a nil *metrics (no Registerer): it does nothing.
type metrics struct {
	streamsClosed *prometheus.CounterVec
	deliveries    prometheus.Counter
	ingress       *prometheus.CounterVec
	rateLimited   prometheus.Counter
	replays       prometheus.Counter
	gaps          prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, g *Gateway) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	const ns, sub = "eventbus", "gateway"
	m := &metrics{
		streamsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "streams_closed_total",
			Help: "Browser streams that ended, by reason: client_gone, slow_client, shutdown, gap, token_expired, error."}, []string{"reason"}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "deliveries_total",
			Help: "Events written to browser streams (live and replayed)."}),
		ingress: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "ingress_requests_total",
			Help: "POST /v1/events requests, by response status code."}, []string{"status"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "ingress_rate_limited_total",
			Help: "Ingress requests refused with 429 by the rate limit."}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "stream_resumes_total",
			Help: "Streams opened with a Last-Event-ID (they replay before going live)."}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "stream_gaps_total",
			Help: "Gap messages sent: a resumed stream's events after its Last-Event-ID were trimmed."}),
	}
	for _, r := range []string{closeReasonClientGone, closeReasonSlowClient, closeReasonShutdown, closeReasonGap, closeReasonTokenExpired, closeReasonError} {
		m.streamsClosed.WithLabelValues(r) // every reason from 0
	}
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "streams_open",
		Help: "Browser streams open now."}, func() float64 { return float64(g.Clients()) })
	position := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "push_reader_position_seconds",
		Help: "Time (Unix seconds, from the entry id) of the last push-stream entry the reader has dispatched."},
		func() float64 { return float64(g.hub.position().ms) / 1000 })
	lastRead := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "push_reader_last_read_timestamp_seconds",
		Help: "When the push-stream reader last completed a read (Unix seconds; 0 before the first)."},
		func() float64 {
			if t := g.hub.lastReadAt(); !t.IsZero() {
				return float64(t.UnixNano()) / 1e9
			}
			return 0
		})
	lag := newLagCollector(g)
	for _, c := range []prometheus.Collector{m.streamsClosed, m.deliveries, m.ingress, m.rateLimited, m.replays, m.gaps, open, position, lastRead, lag} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("gateway: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) closed(reason error) {
	if m == nil {
		return
	}
	m.streamsClosed.WithLabelValues(closeReason(reason)).Inc()
}

func (m *metrics) delivered(n int) {
	if m != nil && n > 0 {
		m.deliveries.Add(float64(n))
	}
}

func (m *metrics) resumed(gap bool) {
	if m == nil {
		return
	}
	m.replays.Inc()
	if gap {
		m.gaps.Inc()
	}
}

// closeReason is the label of a stream's end reason.
func closeReason(err error) string {
	switch {
	case errors.Is(err, errSlowClient):
		return closeReasonSlowClient
	case errors.Is(err, ErrGatewayClosed):
		return closeReasonShutdown
	case errors.Is(err, errPushStreamGap):
		return closeReasonGap
	case errors.Is(err, errTokenExpired):
		return closeReasonTokenExpired
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, errStreamWrite):
		return closeReasonClientGone
	default:
		return closeReasonError
	}
}

// countIngress wraps the ingress handler: every answer counted by status.
func (m *metrics) countIngress(h http.HandlerFunc) http.HandlerFunc {
	if m == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		m.ingress.WithLabelValues(strconv.Itoa(code)).Inc()
		if code == http.StatusTooManyRequests {
			m.rateLimited.Inc()
		}
	}
}

// statusWriter records the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// lagCollector reads the push stream's last id at scrape time: the lag is
// how far (in the entry ids' milliseconds) the reader is behind it.
type lagCollector struct {
	g    *Gateway
	desc *prometheus.Desc
}

func newLagCollector(g *Gateway) *lagCollector {
	return &lagCollector{g: g, desc: prometheus.NewDesc("eventbus_gateway_push_reader_lag_seconds",
		"How far the push-stream reader is behind the stream's last entry, by the entries' id times (0 when caught up; absent when Redis cannot be read).", nil, nil)}
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.g.cfg.PublishTimeout)
	defer cancel()
	lag, err := c.g.pushLag(ctx)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, lag.Seconds())
}

// pushLag returns how far the push-stream reader is behind the stream's
// last entry, by the entry ids' times: 0 when it has dispatched every
// entry. It reads the stream's last id from Redis.
func (g *Gateway) pushLag(ctx context.Context) (time.Duration, error) {
	info, err := streamInfoOf(ctx, g.bus.Client(), g.bus.Config().PushKey())
	if err != nil {
		return 0, err
	}
	pos := g.hub.position()
	if !pos.less(info.lastGenerated) {
		return 0, nil
	}
	return time.Duration(info.lastGenerated.ms-pos.ms) * time.Millisecond, nil
}

// Ready reports whether the gateway can serve streams: nil when the
// push-stream reader runs and has completed a read of the stream within
// Config.StuckAfter; otherwise an error wrapping [ErrNotReady] that says
// why (not started, stopped, or stuck since when, e.g. Redis unreachable).
// A stuck reader means open streams get no live events: take the replica
// out of the load balancer until it reads again.
func (g *Gateway) Ready() error {
	switch {
	case !g.hub.started():
		return fmt.Errorf("%w: the push-stream reader has not started (call Run)", ErrNotReady)
	case !g.hub.isRunning():
		select {
		case <-g.hub.done:
			return fmt.Errorf("%w: the push-stream reader has stopped (the gateway is closing)", ErrNotReady)
		default:
			return fmt.Errorf("%w: the push-stream reader has not found its starting position yet (is Redis reachable?)", ErrNotReady)
		}
	}
	last := g.hub.lastReadAt()
	if age := time.Since(last); age > g.cfg.StuckAfter {
		return fmt.Errorf("%w: the push-stream reader is stuck: its last read completed %s ago, at %s (more than StuckAfter %s); is Redis reachable?",
			ErrNotReady, age.Round(time.Millisecond), last.UTC().Format(time.RFC3339), g.cfg.StuckAfter)
	}
	return nil
}

// readClock records when the hub's last read completed.
type readClock struct{ ns atomic.Int64 }

func (c *readClock) mark() { c.ns.Store(time.Now().UnixNano()) }

func (c *readClock) at() time.Time {
	if n := c.ns.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}
