package observe_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/observe"
	"github.com/shared-infra/eventbus/router"
)

type job struct {
	N int `json:"n"`
}

func newBus(t *testing.T, mutate ...func(*bus.Config)) *bus.Bus {
	t.Helper()
	cfg := bus.Config{ServiceName: "svc", Client: redistest.Client(t), StreamPrefix: redistest.Prefix(t)}
	for _, m := range mutate {
		m(&cfg)
	}
	b, err := bus.New(cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// fastConfig is routertest.FastConfig with pattern subscriptions resyncing
// every 100 ms.
func fastConfig() router.Config {
	cfg := routertest.FastConfig()
	cfg.Subscriber.ResyncInterval = 100 * time.Millisecond
	return cfg
}

// newObserver returns an observer of r on a fresh pedantic registry, and a
// test server with its endpoints mounted.
func newObserver(t *testing.T, r *router.Router, cfg observe.Config, logger watermill.LoggerAdapter) (*observe.Observer, *prometheus.Registry, *httptest.Server) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	cfg.Registerer = reg
	obs, err := observe.New(r, cfg, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = obs.Close() })
	mux := http.NewServeMux()
	obs.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return obs, reg, srv
}

// get fetches path from srv and returns the status code and body.
func get(t *testing.T, srv *httptest.Server, path string) (int, []byte) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, body
}

func getStats(t *testing.T, srv *httptest.Server) observe.Snapshot {
	t.Helper()
	code, body := get(t, srv, observe.PathStats)
	require.Equal(t, http.StatusOK, code, string(body))
	var s observe.Snapshot
	require.NoError(t, json.Unmarshal(body, &s), string(body))
	return s
}

func getHealth(t *testing.T, srv *httptest.Server, path string) (int, observe.Health) {
	t.Helper()
	code, body := get(t, srv, path)
	var h observe.Health
	require.NoError(t, json.Unmarshal(body, &h), string(body))
	return code, h
}

// scrape fetches /metrics and parses the text exposition format.
func scrape(t *testing.T, srv *httptest.Server) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, srv, observe.PathMetrics)
	require.Equal(t, http.StatusOK, code, string(body))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	require.NoError(t, err)
	return fams
}

// value returns the value of the sample of family name whose labels include
// labels (name=value pairs); ok is false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Summary != nil:
			return float64(m.GetSummary().GetSampleCount()), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}
