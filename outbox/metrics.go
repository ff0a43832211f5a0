package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shared-infra/eventbus/bus"
)

// metrics of a Forwarder; nil (no Registerer) counts nothing.
type metrics struct {
	forwarded prometheus.Counter
	errs      prometheus.Counter
	setAside  prometheus.Counter
	lag       prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, db *sql.DB, table string) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	labels := prometheus.Labels{"table": table}
	m := &metrics{
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventbus_outbox_forwarded_total", ConstLabels: labels,
			Help: "Events the forwarder published to the bus (a re-publish after a crash counts again; the bus drops it as a duplicate).",
		}),
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventbus_outbox_publish_errors_total", ConstLabels: labels,
			Help: "Failed publishes to the bus; the row stays and is retried.",
		}),
		setAside: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventbus_outbox_set_aside_total", ConstLabels: labels,
			Help: "Rows moved to the _failed table (not an envelope, or refused by the bus for good).",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "eventbus_outbox_forward_lag_seconds", ConstLabels: labels,
			Help:    "Time from an event's time attribute (set when it was stored) to its publish on the bus.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
	}
	for _, c := range []prometheus.Collector{m.forwarded, m.errs, m.setAside, m.lag, pendingCollector{db: db, table: table, labels: labels}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("outbox: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) published(msgs []*message.Message, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.errs.Inc()
		return
	}
	now := time.Now()
	for _, msg := range msgs {
		m.forwarded.Inc()
		if t, perr := time.Parse(time.RFC3339Nano, msg.Metadata.Get(bus.AttrTime)); perr == nil {
			m.lag.Observe(now.Sub(t).Seconds())
		}
	}
}

func (m *metrics) failed() {
	if m != nil {
		m.setAside.Inc()
	}
}

// pendingCollector reports the outbox table's backlog, queried at scrape
// time (one COUNT, 2 s timeout).
type pendingCollector struct {
	db     *sql.DB
	table  string
	labels prometheus.Labels
}

var (
	pendingDesc = func(l prometheus.Labels) *prometheus.Desc {
		return prometheus.NewDesc("eventbus_outbox_pending_rows", "Rows waiting in the outbox table.", nil, l)
	}
	oldestDesc = func(l prometheus.Labels) *prometheus.Desc {
		return prometheus.NewDesc("eventbus_outbox_oldest_pending_seconds", "Age of the oldest row waiting in the outbox table (0 when empty).", nil, l)
	}
	upDesc = func(l prometheus.Labels) *prometheus.Desc {
		return prometheus.NewDesc("eventbus_outbox_database_up", "1 if the last scrape could query the outbox table, else 0.", nil, l)
	}
)

func (c pendingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc(c.labels)
	ch <- oldestDesc(c.labels)
	ch <- upDesc(c.labels)
}

func (c pendingCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows, age, err := Pending(ctx, c.db, c.table)
	if err != nil && !errors.Is(err, context.Canceled) {
		ch <- prometheus.MustNewConstMetric(upDesc(c.labels), prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(upDesc(c.labels), prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(pendingDesc(c.labels), prometheus.GaugeValue, float64(rows))
	ch <- prometheus.MustNewConstMetric(oldestDesc(c.labels), prometheus.GaugeValue, age)
}
