package observe

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Paths Mount registers.
const (
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
	PathStats   = "/stats"
	PathMetrics = "/metrics"
)

// Healthz serves Liveness as JSON: 200 when ok, 503 otherwise.
func (o *Observer) Healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := o.Liveness(r.Context())
		writeJSON(w, h.HTTPStatus(), h)
	})
}

// Readyz serves Readiness as JSON: 200 when ok, 503 when degraded or down.
func (o *Observer) Readyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := o.Readiness(r.Context())
		writeJSON(w, h.HTTPStatus(), h)
	})
}

// StatsHandler serves Stats as JSON, always with 200: when Redis cannot be
// read the counters are still served, with "redis" down and its error.
func (o *Observer) StatsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := o.Stats(r.Context()) // the error is in s.Redis
		writeJSON(w, http.StatusOK, s)
	})
}

// Metrics serves Config.Gatherer in the Prometheus exposition format. With no
// Registerer configured it answers 404.
func (o *Observer) Metrics() http.Handler {
	if o.cfg.Gatherer == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "metrics are disabled: set observe.Config.Registerer", http.StatusNotFound)
		})
	}
	return promhttp.HandlerFor(o.cfg.Gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Mount registers GET /healthz, /readyz, /stats and /metrics on mux. It
// panics, as ServeMux.Handle does, if one of them is registered already.
func (o *Observer) Mount(mux *http.ServeMux) {
	mux.Handle("GET "+PathHealthz, o.Healthz())
	mux.Handle("GET "+PathReadyz, o.Readyz())
	mux.Handle("GET "+PathStats, o.StatsHandler())
	mux.Handle("GET "+PathMetrics, o.Metrics())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false) // patterns such as "photo.>" stay readable
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body.Bytes())
}
