package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/internal/faultproxy"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/observe"
	"github.com/shared-infra/eventbus/router"
)

// metric returns the value of the series name{labels} in reg, or -1.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func TestGatewayMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.Registerer = reg
		c.RateLimit = gateway.RateLimit{PerSecond: 0.001, Burst: 2}
	}})
	tok := e.token("alice", "a")
	c := e.connect(tok, "a", "")
	waitFor(t, wait, "the stream", func() bool { return e.gw.Clients() == 1 })
	assert.Equal(t, 1.0, metric(t, reg, "eventbus_gateway_streams_open", nil))

	e.publish("m.e", payload{"1"}, bus.WithRoom("a"))
	m, ok := c.next(wait, false)
	require.True(t, ok)
	first := m.ID
	waitFor(t, wait, "deliveries_total 1", func() bool { return metric(t, reg, "eventbus_gateway_deliveries_total", nil) == 1 })
	assert.Equal(t, 0.0, metric(t, reg, "eventbus_gateway_push_reader_lag_seconds", nil), "caught up")
	pos := metric(t, reg, "eventbus_gateway_push_reader_position_seconds", nil)
	assert.InDelta(t, float64(time.Now().Unix()), pos, 60, "position is the time of the last entry")
	assert.InDelta(t, float64(time.Now().Unix()), metric(t, reg, "eventbus_gateway_push_reader_last_read_timestamp_seconds", nil), 60)

	// The browser goes away: client_gone.
	c.close()
	waitFor(t, wait, "client_gone 1", func() bool {
		return metric(t, reg, "eventbus_gateway_streams_closed_total", map[string]string{"reason": gateway.CloseReasonClientGone}) == 1
	})
	assert.Equal(t, 0.0, metric(t, reg, "eventbus_gateway_streams_open", nil))

	// Ingress: one 202, one 401, the burst of 2 used up: 429.
	resp, _ := e.post("application/cloudevents+json", `{"specversion":"1.0","id":"m-1","source":"t","type":"m.e","data":{}}`, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	resp, _ = e.post("application/cloudevents+json", `{}`, map[string]string{"Authorization": "Bearer wrong-key-0123456789abcdef"})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = e.post("application/cloudevents+json", `{"specversion":"1.0","id":"m-2","source":"t","type":"m.e","data":{}}`, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	resp, _ = e.post("application/cloudevents+json", `{"specversion":"1.0","id":"m-3","source":"t","type":"m.e","data":{}}`, nil)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	for status, want := range map[string]float64{"202": 2, "401": 1, "429": 1} {
		assert.Equal(t, want, metric(t, reg, "eventbus_gateway_ingress_requests_total", map[string]string{"status": status}), "status %s", status)
	}
	assert.Equal(t, 1.0, metric(t, reg, "eventbus_gateway_ingress_rate_limited_total", nil))

	// A resume, then a resume across a trim: a gap.
	_ = e.connect(tok, "a", first)
	waitFor(t, wait, "the stream", func() bool { return e.gw.Clients() == 1 })
	assert.Equal(t, 1.0, metric(t, reg, "eventbus_gateway_stream_resumes_total", nil))
	assert.Equal(t, 0.0, metric(t, reg, "eventbus_gateway_stream_gaps_total", nil))
	e.publish("m.e", payload{"2"}, bus.WithRoom("a"))
	e.publish("m.e", payload{"3"}, bus.WithRoom("a"))
	require.NoError(t, e.rdb.XTrimMaxLen(context.Background(), e.pushKey(), 1).Err())
	c2 := e.connect(tok, "a", first)
	m, ok = c2.next(wait, false)
	require.True(t, ok)
	require.Equal(t, gateway.GapEvent, m.Event)
	assert.Equal(t, 2.0, metric(t, reg, "eventbus_gateway_stream_resumes_total", nil))
	assert.Equal(t, 1.0, metric(t, reg, "eventbus_gateway_stream_gaps_total", nil))

	// Shutdown closes both: reason shutdown.
	waitFor(t, wait, "two streams", func() bool { return e.gw.Clients() == 2 })
	require.NoError(t, e.gw.Close())
	waitFor(t, wait, "shutdown 2", func() bool {
		return metric(t, reg, "eventbus_gateway_streams_closed_total", map[string]string{"reason": gateway.CloseReasonShutdown}) == 2
	})
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

// Ready fails while the push-stream reader cannot complete a read (Redis
// stalled behind a proxy) and recovers when it reads again.
func TestGatewayReadyStuckReader(t *testing.T) {
	opts, err := redis.ParseURL(redistest.URL())
	require.NoError(t, err)
	p, err := faultproxy.New(opts.Addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	opts.Addr = p.Addr()
	opts.ReadTimeout, opts.MaxRetries = 200*time.Millisecond, -1
	client := redis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	e := newEnv(t, envOpts{client: client, gw: func(c *gateway.Config) { c.StuckAfter = 500 * time.Millisecond }})
	require.NoError(t, e.gw.Ready())

	p.SetStalled(true)
	var rerr error
	waitFor(t, wait, "Ready to report the stuck reader", func() bool { rerr = e.gw.Ready(); return rerr != nil })
	assert.True(t, errors.Is(rerr, gateway.ErrNotReady))
	assert.Contains(t, rerr.Error(), "stuck")

	p.SetStalled(false)
	p.CutAll() // the stalled connections are dead to the client: start afresh
	waitFor(t, wait, "Ready again", func() bool { return e.gw.Ready() == nil })

	require.NoError(t, e.gw.Close())
	assert.ErrorIs(t, e.gw.Ready(), gateway.ErrNotReady, "a closed gateway is not ready")
}

// TestMetricsNameTheHandlerHandlerName: the gateway's metrics, the bus's
// (observe) and Watermill's on one registry, as `eventbus serve` and a
// worker share one, after an event went from ingress to a handler: no
// label is named "handler"; the handler's series carry handler_name.
func TestMetricsNameTheHandlerHandlerName(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) { c.Registerer = reg }})
	r, err := router.New(e.bus, routertest.FastConfig(), nil)
	require.NoError(t, err)
	obs, err := observe.New(r, observe.Config{Registerer: reg}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = obs.Close() })
	require.NoError(t, r.AddHandler("thumbnails", "label.job", func(context.Context, *message.Message) error { return nil }))
	routertest.Start(t, r)

	resp, body := e.post("application/cloudevents+json",
		`{"specversion":"1.0","id":"lbl-1","source":"test","type":"label.job","data":{}}`, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, string(body))
	require.Eventually(t, func() bool { return r.Stats()["thumbnails"].Acked == 1 }, 20*time.Second, 10*time.Millisecond)

	fams, err := reg.Gather()
	require.NoError(t, err)
	labelled := map[string]bool{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				assert.NotEqual(t, "handler", lp.GetName(), "%s has a label named handler: use handler_name", f.GetName())
				if lp.GetName() == "handler_name" && lp.GetValue() == "thumbnails" {
					labelled[f.GetName()] = true
				}
			}
		}
	}
	for _, name := range []string{
		"eventbus_handler_received_total", "eventbus_handler_processing_seconds",
		"eventbus_watermill_handler_execution_time_seconds", "eventbus_watermill_subscriber_messages_received_total",
	} {
		assert.True(t, labelled[name], "%s{handler_name=\"thumbnails\"} missing", name)
	}
	assert.Positive(t, metric(t, reg, "eventbus_gateway_ingress_requests_total", map[string]string{"status": "202"}), "the gateway's metrics are on the registry too")
}
