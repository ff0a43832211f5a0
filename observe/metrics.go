package observe

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ProcessingBuckets are the classic buckets of the
// eventbus_handler_processing_seconds histogram, in seconds. The histogram
// is also a native histogram (bucket factor 1.1), which a Prometheus that
// scrapes protobuf with native histograms enabled stores instead of (or
// beside, with always_scrape_classic_histograms) these.
var ProcessingBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// newProcessingHistogram is eventbus_handler_processing_seconds. It is
// observed for every delivery (through middleware.Stats.OnProcessed) rather
// than built at scrape time from the router's own power-of-two buckets, as
// the summary it replaces was: a histogram's buckets add up across
// replicas (sum by (le) (rate(..._bucket[5m]))), a summary's quantiles do
// not.
func newProcessingHistogram() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: MetricsNamespace,
		Name:      "handler_processing_seconds",
		Help:      "Time from receipt to ack or nack of a delivery, retries included.",
		Buckets:   ProcessingBuckets,

		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  160,
		NativeHistogramMinResetDuration: time.Hour,
	}, []string{"handler_name"})
}

// collector exposes the bus's own metrics. It reads a Snapshot at scrape
// time (so it never disagrees with /stats): counters from the router's
// in-process stats, lag, pending and dead letters from Redis.
type collector struct {
	o *Observer

	received, acked, nacked, failed, retried, deadLettered, filtered *prometheus.Desc
	inFlight, lag, pending, consuming, lost                          *prometheus.Desc
	processing                                                       *prometheus.HistogramVec
	published, publishFailed, publishDuplicates                      *prometheus.Desc
	deadLetters, uptime, redisUp, redisRTT                           *prometheus.Desc
}

func newCollector(o *Observer) *collector {
	name := func(n string) string { return prometheus.BuildFQName(MetricsNamespace, "", n) }
	handler := []string{"handler_name"}
	topic := []string{"topic"}
	return &collector{
		o:                 o,
		received:          prometheus.NewDesc(name("handler_received_total"), "Deliveries handed to the handler's middleware stack.", handler, nil),
		acked:             prometheus.NewDesc(name("handler_acked_total"), "Deliveries that ended in an ack: handled, filtered or dead-lettered.", handler, nil),
		nacked:            prometheus.NewDesc(name("handler_nacked_total"), "Deliveries that ended in a nack (they are delivered again).", handler, nil),
		failed:            prometheus.NewDesc(name("handler_failed_total"), "Handler attempts that failed: returned an error, timed out, panicked or were invalid.", handler, nil),
		retried:           prometheus.NewDesc(name("handler_retried_total"), "Retries scheduled after a failed attempt.", handler, nil),
		deadLettered:      prometheus.NewDesc(name("handler_dead_lettered_total"), "Events the handler gave up on, sent to the dead-letter stream.", handler, nil),
		filtered:          prometheus.NewDesc(name("handler_filtered_total"), "Events the handler's filter skipped (acked unprocessed).", handler, nil),
		inFlight:          prometheus.NewDesc(name("handler_in_flight"), "Deliveries being processed now.", handler, nil),
		processing:        newProcessingHistogram(),
		lag:               prometheus.NewDesc(name("handler_lag"), "Entries of the handler's streams not yet delivered to its consumer group (absent when Redis cannot be read).", handler, nil),
		pending:           prometheus.NewDesc(name("handler_pending"), "Entries delivered to the handler's consumer group and not yet acked (absent when Redis cannot be read).", handler, nil),
		lost:              prometheus.NewDesc(name("handler_lost_total"), "Entries of the handler's streams removed (retention cap or anyone's XTRIM) before its consumer group read them, as counted by the bus's retention passes (absent when Redis cannot be read).", handler, nil),
		consuming:         prometheus.NewDesc(name("handler_consuming"), "1 when the handler's subscription is open, else 0.", handler, nil),
		published:         prometheus.NewDesc(name("published_total"), "Events the bus published (every Publish call of its Publisher).", topic, nil),
		publishFailed:     prometheus.NewDesc(name("publish_failed_total"), "Events whose Publish call on the bus failed (invalid, too large, Redis unreachable).", topic, nil),
		publishDuplicates: prometheus.NewDesc(name("publish_duplicates_total"), "Events the bus's publisher did not write because their id was already written to the stream within its dedup window (a retried publish, or a retried XADD whose reply was lost); counted in published_total too.", topic, nil),
		deadLetters:       prometheus.NewDesc(name("dead_letters"), "Entries in the dead-letter stream (absent when Redis cannot be read).", nil, nil),
		uptime:            prometheus.NewDesc(name("uptime_seconds"), "Time since the observer was created.", nil, nil),
		redisUp:           prometheus.NewDesc(name("redis_up"), "1 when Redis answered the scrape's PING and reads, else 0.", nil, nil),
		redisRTT:          prometheus.NewDesc(name("redis_rtt_seconds"), "Round-trip time of the scrape's PING to Redis (absent when Redis is down).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.received, c.acked, c.nacked, c.failed, c.retried, c.deadLettered, c.filtered,
		c.inFlight, c.lag, c.pending, c.consuming, c.lost,
		c.published, c.publishFailed, c.publishDuplicates, c.deadLetters, c.uptime, c.redisUp, c.redisRTT,
	} {
		ch <- d
	}
	c.processing.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	snap, err := c.o.Stats(context.Background()) // bounded by Config.RedisTimeout
	counter := func(d *prometheus.Desc, v uint64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, name := range sortedKeys(snap.Handlers) {
		h := snap.Handlers[name]
		counter(c.received, h.Received, name)
		counter(c.acked, h.Acked, name)
		counter(c.nacked, h.Nacked, name)
		counter(c.failed, h.Failed, name)
		counter(c.retried, h.Retried, name)
		counter(c.deadLettered, h.DeadLettered, name)
		counter(c.filtered, h.Filtered, name)
		gauge(c.inFlight, float64(h.InFlight), name)
		c.processing.WithLabelValues(name) // a handler with no delivery yet shows count 0
		if h.Pattern == "" {
			continue // removed: counters only
		}
		gauge(c.consuming, b2f(h.Consuming), name)
		if err == nil {
			gauge(c.lag, float64(h.Lag), name)
			gauge(c.pending, float64(h.Pending), name)
			counter(c.lost, uint64(h.Lost), name)
		}
	}
	for _, t := range sortedKeys(snap.Topics) {
		counter(c.published, snap.Topics[t].Published, t)
		counter(c.publishFailed, snap.Topics[t].Failed, t)
		counter(c.publishDuplicates, snap.Topics[t].Duplicates, t)
	}
	gauge(c.uptime, snap.UptimeSeconds)
	gauge(c.redisUp, b2f(err == nil))
	if snap.Redis.Status == StatusOK {
		gauge(c.redisRTT, snap.Redis.rtt.Seconds())
	}
	if err == nil {
		gauge(c.deadLetters, float64(snap.DeadLetters))
	}
	c.processing.Collect(ch)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
