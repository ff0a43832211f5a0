package observe_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/observe"
	"github.com/shared-infra/eventbus/router"
)

// The scripted run: N events published, M of them fail once and succeed on
// the retry, K always fail (3 attempts, dead-lettered), F are filtered; one
// publish fails (invalid data) and one goes to an invalid topic. /stats and
// /metrics must report exactly those counts.
func TestStatsAndMetricsReportAScriptedRunExactly(t *testing.T) {
	const (
		n          = 20
		flaky      = 3 // n 0..2: fail the first attempt
		poison     = 2 // n 3..4: fail every attempt
		filtered   = 4 // n 5..8: filtered out
		attempts   = 3
		wantFailed = flaky + poison*attempts     // 9
		wantRetry  = flaky + poison*(attempts-1) // 7
		wantRecv   = n                           // one delivery each: retries happen inside it
		wantWindow = wantRecv + n                // worker + audit deliveries
		wantRate   = float64(wantFailed) / wantWindow
	)
	b := newBus(t)
	r, err := router.New(b, fastConfig(), nil)
	require.NoError(t, err)
	// The recommended order: observe.New before the handlers are added, so
	// that Watermill's handler metrics wrap each whole delivery.
	obs, reg, srv := newObserver(t, r, observe.Config{}, nil)

	var mu sync.Mutex
	seen := map[int]int{}
	require.NoError(t, router.Handle(r, "worker", "obs.job", func(ctx context.Context, ev bus.Event[job]) error {
		mu.Lock()
		seen[ev.Data.N]++
		tries := seen[ev.Data.N]
		mu.Unlock()
		switch {
		case ev.Data.N < flaky && tries == 1:
			return errors.New("storage unavailable")
		case ev.Data.N >= flaky && ev.Data.N < flaky+poison:
			return errors.New("cannot decode image")
		}
		return nil
	}, router.WithFilter(func(m *message.Message) bool {
		ev, err := bus.Decode[job](m)
		return err != nil || ev.Data.N < 5 || ev.Data.N > 8
	})))
	// A second handler on a pattern: its lag is read through the type registry.
	require.NoError(t, r.AddHandler("audit", "obs.>", func(context.Context, *message.Message) error { return nil }))
	routertest.Start(t, r)

	pub := r.Publisher()
	for i := range n {
		_, err := bus.Publish(context.Background(), pub, "obs.job", job{N: i})
		require.NoError(t, err)
	}
	require.ErrorIs(t, pub.Publish("obs.job", message.NewMessage(watermill.NewUUID(), []byte("not json"))), bus.ErrInvalidData)
	require.ErrorIs(t, pub.Publish("Not..A.Type", message.NewMessage(watermill.NewUUID(), []byte(`{}`))), bus.ErrInvalidType)

	// Wait for the end of the run: everything acked, acks flushed, nothing lags.
	require.Eventually(t, func() bool {
		s, err := obs.Stats(context.Background())
		w, a := s.Handlers["worker"], s.Handlers["audit"]
		return err == nil && w.Acked == n && a.Acked == n && s.DeadLetters == poison &&
			w.LagKnown && a.LagKnown && w.Lag+w.Pending+a.Lag+a.Pending == 0
	}, 20*time.Second, 20*time.Millisecond, "the scripted run did not finish")

	// /stats
	s := getStats(t, srv)
	assert.Equal(t, "svc", s.Service)
	assert.Equal(t, map[string]observe.TopicStats{"obs.job": {Published: n, Failed: 1}, observe.InvalidTopic: {Failed: 1}}, s.Topics)
	w := s.Handlers["worker"]
	assert.EqualValues(t, wantRecv, w.Received)
	assert.EqualValues(t, n, w.Acked)
	assert.Zero(t, w.Nacked)
	assert.EqualValues(t, wantFailed, w.Failed)
	assert.EqualValues(t, wantRetry, w.Retried)
	assert.EqualValues(t, poison, w.DeadLettered)
	assert.EqualValues(t, filtered, w.Filtered)
	assert.Zero(t, w.InFlight)
	assert.EqualValues(t, n, w.Processing.Count)
	assert.Positive(t, w.Processing.P99)
	assert.Equal(t, "obs.job", w.Pattern)
	assert.Equal(t, "svc.worker", w.ConsumerGroup)
	assert.True(t, w.Consuming)
	assert.Equal(t, []observe.StreamLag{{Type: "obs.job", Stream: b.Config().StreamKey("obs.job"), GroupExists: true}}, w.Streams)
	assert.EqualValues(t, wantFailed, w.Window.Failed)
	assert.EqualValues(t, wantRecv, w.Window.Received)
	a := s.Handlers["audit"]
	assert.EqualValues(t, n, a.Received)
	assert.Zero(t, a.Failed)
	assert.Equal(t, "obs.>", a.Pattern)
	assert.Equal(t, []observe.StreamLag{{Type: "obs.job", Stream: b.Config().StreamKey("obs.job"), GroupExists: true}}, a.Streams)
	assert.EqualValues(t, wantWindow, s.Window.Received)
	assert.EqualValues(t, wantFailed, s.Window.Failed)
	assert.InDelta(t, wantRate, s.Window.ErrorRate, 1e-9)
	assert.Positive(t, s.Window.Seconds)
	assert.EqualValues(t, poison, s.DeadLetters)
	assert.Equal(t, observe.StatusOK, s.Redis.Status)
	assert.Positive(t, s.UptimeSeconds)

	// /metrics, parsed from the text format.
	m := scrape(t, srv)
	want := map[string]float64{
		"eventbus_handler_received_total":      wantRecv,
		"eventbus_handler_acked_total":         n,
		"eventbus_handler_nacked_total":        0,
		"eventbus_handler_failed_total":        wantFailed,
		"eventbus_handler_retried_total":       wantRetry,
		"eventbus_handler_dead_lettered_total": poison,
		"eventbus_handler_filtered_total":      filtered,
		"eventbus_handler_in_flight":           0,
		"eventbus_handler_processing_seconds":  n, // sample count
		"eventbus_handler_lag":                 0,
		"eventbus_handler_pending":             0,
		"eventbus_handler_consuming":           1,
	}
	for name, v := range want {
		got, ok := value(m, name, "handler_name", "worker")
		if assert.True(t, ok, "%s{handler_name=worker} missing", name) {
			assert.Equal(t, v, got, name)
		}
	}
	for name, v := range map[string]float64{"eventbus_handler_received_total": n, "eventbus_handler_failed_total": 0, "eventbus_handler_lag": 0} {
		got, ok := value(m, name, "handler_name", "audit")
		assert.True(t, ok, "%s{handler_name=audit} missing", name)
		assert.Equal(t, v, got, name)
	}
	checkValue := func(want float64, name string, labels ...string) {
		t.Helper()
		got, ok := value(m, name, labels...)
		if assert.True(t, ok, "%s%v missing", name, labels) {
			assert.Equal(t, want, got, "%s%v", name, labels)
		}
	}
	checkValue(n, "eventbus_published_total", "topic", "obs.job")
	checkValue(1, "eventbus_publish_failed_total", "topic", "obs.job")
	checkValue(1, "eventbus_publish_failed_total", "topic", observe.InvalidTopic)
	checkValue(poison, "eventbus_dead_letters")
	checkValue(1, "eventbus_redis_up")
	// Watermill's own router metrics are there too, with the same counts.
	checkValue(n, "eventbus_watermill_handler_execution_time_seconds", "handler_name", "worker", "success", "true")
	checkValue(n, "eventbus_watermill_subscriber_messages_received_total", "handler_name", "worker", "acked", "acked")
	rtt, ok := value(m, "eventbus_redis_rtt_seconds")
	assert.True(t, ok)
	assert.Positive(t, rtt)
	up, _ := value(m, "eventbus_uptime_seconds")
	assert.Positive(t, up)

	// The same counters straight from the registry, in the exposition format.
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP eventbus_published_total Events the bus published (every Publish call of its Publisher).
# TYPE eventbus_published_total counter
eventbus_published_total{topic="$invalid"} 0
eventbus_published_total{topic="obs.job"} 20
# HELP eventbus_publish_failed_total Events whose Publish call on the bus failed (invalid, too large, Redis unreachable).
# TYPE eventbus_publish_failed_total counter
eventbus_publish_failed_total{topic="$invalid"} 1
eventbus_publish_failed_total{topic="obs.job"} 1
`), "eventbus_published_total", "eventbus_publish_failed_total"))

	// Every metric name and help passes promlint.
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)

	code, h := getHealth(t, srv, observe.PathReadyz)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, observe.StatusOK, h.Status)
	assert.Equal(t, observe.HandlerCheck{Status: observe.StatusOK, Consuming: true, LagKnown: true}, h.Checks.Handlers["worker"])
}

func TestLagGrowsWhileAHandlerIsPausedAndFallsAfter(t *testing.T) {
	b := newBus(t)
	cfg := fastConfig()
	cfg.Subscriber.BatchSize = 1 // read no more ahead than one entry, so the backlog stays lag
	r, err := router.New(b, cfg, nil)
	require.NoError(t, err)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	require.NoError(t, r.AddHandler("slow", "lag.>", func(ctx context.Context, _ *message.Message) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, router.WithTimeout(-1)))
	obs, reg, srv := newObserver(t, r, observe.Config{LagDegradedThreshold: 10}, nil)
	routertest.Start(t, r)

	pub := r.Publisher()
	for i := range 50 {
		typ := "lag.a"
		if i%2 == 1 {
			typ = "lag.b"
		}
		_, err := bus.Publish(context.Background(), pub, typ, job{N: i})
		require.NoError(t, err)
	}
	// Paused: at most one entry per stream is read ahead; the rest is lag.
	require.Eventually(t, func() bool {
		s, err := obs.Stats(context.Background())
		h := s.Handlers["slow"]
		return err == nil && h.LagKnown && len(h.Streams) == 2 && h.Lag >= 45 && h.Pending >= 1
	}, 10*time.Second, 20*time.Millisecond, "lag did not grow")
	s := getStats(t, srv)
	h := s.Handlers["slow"]
	assert.EqualValues(t, 50, h.Lag+h.Pending)
	assert.Equal(t, h.Lag, h.Streams[0].Lag+h.Streams[1].Lag, "the handler's lag is the sum over its streams")
	assert.Equal(t, []string{"lag.a", "lag.b"}, []string{h.Streams[0].Type, h.Streams[1].Type})
	lag, ok := value(scrape(t, srv), "eventbus_handler_lag", "handler_name", "slow")
	assert.True(t, ok)
	assert.GreaterOrEqual(t, lag, 45.0)

	code, health := getHealth(t, srv, observe.PathReadyz)
	assert.Equal(t, http.StatusServiceUnavailable, code, "degraded is not ready")
	assert.Equal(t, observe.StatusDegraded, health.Status)
	assert.Equal(t, observe.StatusDegraded, health.Checks.Handlers["slow"].Status)
	assert.Contains(t, health.Checks.Handlers["slow"].Detail, "is above 10")
	code, health = getHealth(t, srv, observe.PathHealthz)
	assert.Equal(t, http.StatusOK, code, "degraded is live")
	assert.Equal(t, observe.StatusOK, health.Status)

	unblock()
	require.Eventually(t, func() bool {
		s, err := obs.Stats(context.Background())
		h := s.Handlers["slow"]
		return err == nil && h.LagKnown && h.Lag == 0 && h.Pending == 0
	}, 20*time.Second, 20*time.Millisecond, "lag did not fall to 0")
	assert.Eventually(t, func() bool {
		code, _ := get(t, srv, observe.PathReadyz)
		return code == http.StatusOK
	}, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, 0.0, testutil.ToFloat64(gaugeOf(t, reg, "eventbus_handler_lag", "slow")))
}

// gaugeOf returns a collector for one series of the registry (for ToFloat64).
func gaugeOf(t *testing.T, reg *prometheus.Registry, name, handler string) prometheus.Collector {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "handler_name" && l.GetValue() == handler {
					g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: f.GetHelp()})
					g.Set(m.GetGauge().GetValue())
					return g
				}
			}
		}
	}
	t.Fatalf("no %s{handler_name=%q}", name, handler)
	return nil
}

func TestHealthBeforeRunAndNewAfterRun(t *testing.T) {
	b := newBus(t)
	r, err := router.New(b, fastConfig(), nil)
	require.NoError(t, err)
	require.NoError(t, r.AddHandler("h", "obs.job", func(context.Context, *message.Message) error { return nil }))
	_, _, srv := newObserver(t, r, observe.Config{}, nil)

	code, h := getHealth(t, srv, observe.PathHealthz)
	assert.Equal(t, http.StatusOK, code, "a router still starting is live")
	assert.Equal(t, observe.RouterCheck{Status: observe.StatusStarting, Detail: observe.RouterNotStarted}, h.Checks.Router)
	code, h = getHealth(t, srv, observe.PathReadyz)
	assert.Equal(t, http.StatusServiceUnavailable, code, "but not ready")
	assert.Equal(t, observe.StatusDown, h.Status)
	assert.Equal(t, observe.StatusStarting, h.Checks.Handlers["h"].Status)

	routertest.Start(t, r)
	require.Eventually(t, func() bool { code, _ := get(t, srv, observe.PathReadyz); return code == http.StatusOK }, 10*time.Second, 20*time.Millisecond)
	code, h = getHealth(t, srv, observe.PathReadyz)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, observe.StatusOK, h.Checks.Redis.Status)
	assert.Empty(t, h.Checks.Redis.Error)

	_, err = observe.New(r, observe.Config{}, nil)
	assert.ErrorIs(t, err, observe.ErrRouterRunning)
}

// A handler whose subscription ends (here: the bus is closed under the
// router) makes the service unready, while the router itself stays alive.
func TestReadinessFailsWhenAHandlerStopsConsuming(t *testing.T) {
	b := newBus(t)
	r, err := router.New(b, fastConfig(), nil)
	require.NoError(t, err)
	require.NoError(t, r.AddHandler("one", "obs.a", func(context.Context, *message.Message) error { return nil }))
	require.NoError(t, r.AddHandler("two", "obs.b", func(context.Context, *message.Message) error { return nil }))
	// Added at run time: known too.
	_, _, srv := newObserver(t, r, observe.Config{}, nil)
	routertest.Start(t, r)
	require.NoError(t, r.AddHandler("three", "obs.c", func(context.Context, *message.Message) error { return nil }))
	require.Eventually(t, func() bool { code, _ := get(t, srv, observe.PathReadyz); return code == http.StatusOK }, 10*time.Second, 20*time.Millisecond)

	require.NoError(t, r.RemoveHandler("two"))
	code, h := getHealth(t, srv, observe.PathReadyz)
	assert.Equal(t, http.StatusOK, code, "a removed handler is not expected to consume")
	assert.NotContains(t, h.Checks.Handlers, "two")

	require.NoError(t, b.Close()) // closes every subscriber: the handlers stop
	require.Eventually(t, func() bool {
		code, h := getHealth(t, srv, observe.PathReadyz)
		return code == http.StatusServiceUnavailable && h.Checks.Handlers["one"].Status == observe.StatusDown &&
			h.Checks.Handlers["three"].Status == observe.StatusDown
	}, 10*time.Second, 20*time.Millisecond)
	code, _ = getHealth(t, srv, observe.PathHealthz)
	assert.Equal(t, http.StatusOK, code, "the router itself still runs")
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	err := observe.Config{
		Registerer:           prometheus.WrapRegistererWith(prometheus.Labels{"x": "y"}, prometheus.NewRegistry()),
		LagDegradedThreshold: -5, RedisTimeout: -1, ErrorWindow: time.Millisecond,
	}.Validate()
	require.ErrorIs(t, err, observe.ErrInvalidConfig)
	require.ErrorIs(t, err, bus.ErrInvalidConfig, "as in every package")
	for _, want := range []string{"not a prometheus.Gatherer", "LagDegradedThreshold -5", "RedisTimeout -1ns", "ErrorWindow 1ms"} {
		assert.Contains(t, err.Error(), want)
	}
	assert.NoError(t, observe.Config{}.Validate())
	assert.NoError(t, observe.Config{Registerer: prometheus.NewRegistry(), LagDegradedThreshold: -1}.Validate())
}

func TestMetricsWithoutRegistererAnswer404(t *testing.T) {
	b := newBus(t)
	r, err := router.New(b, fastConfig(), nil)
	require.NoError(t, err)
	obs, err := observe.New(r, observe.Config{}, nil)
	require.NoError(t, err)
	defer obs.Close()
	mux := http.NewServeMux()
	obs.Mount(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, observe.PathMetrics, nil))
	assert.Equal(t, http.StatusNotFound, rec.Code)
	assert.Contains(t, rec.Body.String(), "Registerer")
}

// Every publish of the bus is counted, however it is made: on the bus
// Publisher or through the router's Publisher (the same one), once each —
// errors included, a publish its type's schema refuses too.
func TestPublisherCountsPerTopic(t *testing.T) {
	b := newBus(t)
	r, err := router.New(b, fastConfig(), nil)
	require.NoError(t, err)
	obs, err := observe.New(r, observe.Config{}, nil)
	require.NoError(t, err)
	defer obs.Close()
	_, err = b.Schemas().Put(context.Background(), "obs.z", []byte(`{"type":"object","required":["n"]}`))
	require.NoError(t, err)
	ev := func() *message.Message { return message.NewMessage(watermill.NewUUID(), []byte(`{}`)) }
	require.NoError(t, b.Publisher().Publish("obs.x", ev(), ev()))
	require.NoError(t, r.Publisher().Publish("obs.x", ev()))
	require.NoError(t, r.Publisher().Publish("obs.x", ev()))
	big := message.NewMessage(watermill.NewUUID(), make([]byte, bus.DefaultMaxEventSize+1))
	big.Metadata.Set(bus.AttrDataContentType, "application/octet-stream")
	require.ErrorIs(t, b.Publisher().Publish("obs.y", big), bus.ErrEventTooLarge)
	require.ErrorIs(t, b.Publisher().Publish("Not..A.Type", ev()), bus.ErrInvalidType)
	require.ErrorIs(t, r.Publisher().Publish("obs.z", ev()), bus.ErrSchemaViolation)
	s, err := obs.Stats(context.Background())
	require.NoError(t, err)
	assert.Equal(t, map[string]observe.TopicStats{"obs.x": {Published: 4}, "obs.y": {Failed: 1}, "obs.z": {Failed: 1}, observe.InvalidTopic: {Failed: 1}}, s.Topics)
}

// Events the publisher drops as duplicates are counted per topic in /stats
// (topics.<type>.duplicates) and as eventbus_publish_duplicates_total.
func TestPublisherDuplicatesInStatsAndMetrics(t *testing.T) {
	b := newBus(t)
	r, err := router.New(b, fastConfig(), nil)
	require.NoError(t, err)
	_, _, srv := newObserver(t, r, observe.Config{}, nil)
	ev := func(id string) *message.Message { return message.NewMessage(id, []byte(`{}`)) }
	require.NoError(t, b.Publisher().Publish("obs.dup", ev("a"), ev("b")))
	require.NoError(t, b.Publisher().Publish("obs.dup", ev("a")))          // retried with the same id
	require.NoError(t, r.Publisher().Publish("obs.dup", ev("a"), ev("c"))) // the same publisher
	require.NoError(t, b.Publisher().Publish("obs.other", ev("a")))        // another stream: not a duplicate

	s := getStats(t, srv)
	assert.Equal(t, map[string]observe.TopicStats{"obs.dup": {Published: 5, Duplicates: 2}, "obs.other": {Published: 1}}, s.Topics)
	_, body := get(t, srv, observe.PathStats)
	assert.Contains(t, string(body), `"duplicates":2`)

	m := scrape(t, srv)
	for topic, want := range map[string]float64{"obs.dup": 2, "obs.other": 0} {
		got, ok := value(m, "eventbus_publish_duplicates_total", "topic", topic)
		if assert.True(t, ok, "eventbus_publish_duplicates_total{topic=%s} missing", topic) {
			assert.Equal(t, want, got, topic)
		}
	}
}
