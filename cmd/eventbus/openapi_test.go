package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/internal/openapicheck"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// servedEndpoints reads the routes serve logged when it started listening
// (its JSON log's "endpoints": Gateway.Routes, comma-separated), sorted.
func servedEndpoints(t *testing.T, s *served) []string {
	t.Helper()
	for _, l := range lines(s.stderr()) {
		var rec struct {
			Msg       string `json:"msg"`
			Endpoints string `json:"endpoints"`
		}
		if json.Unmarshal([]byte(l), &rec) == nil && strings.HasPrefix(rec.Msg, "eventbus serve: listening") {
			eps := strings.Split(rec.Endpoints, ", ")
			slices.Sort(eps)
			return eps
		}
	}
	t.Fatalf("no listening line with endpoints in:\n%s", s.stderr())
	return nil
}

// documentedOps are the document's operations as mux patterns (no
// OPTIONS: CORS answers preflights before the mux), sorted; withServe
// keeps those marked x-eventbus-mounted-by: serve.
func documentedOps(t *testing.T, doc *openapi3.T, withServe bool) []string {
	t.Helper()
	var out []string
	for path, item := range doc.Paths.Map() {
		if item.Extensions["x-eventbus-mounted-by"] == "serve" && !withServe {
			continue
		}
		for method := range item.Operations() {
			if method != http.MethodOptions {
				out = append(out, method+" "+path)
			}
		}
	}
	slices.Sort(out)
	return out
}

// The real binary: the routes `eventbus serve` registers are exactly the
// document's operations (with --health=false, exactly the gateway's own),
// it serves the embedded document at /openapi.json, and every response of
// every operation, the probes and metrics included, validates against it.
func TestServeRoutesMatchOpenAPI(t *testing.T) {
	t.Parallel()
	_, _, global := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	const apiKey = "openapi-key-0123456789abcdef"
	env := []string{
		"REDIS_URL=" + redistest.URL(), "EVENTBUS_LOG_FORMAT=json",
		"EVENTBUS_JWT_SECRET=0123456789abcdef0123456789abcdef-secret", "EVENTBUS_API_KEYS=" + apiKey,
	}
	s := startServe(t, ctx, env, with(global, "serve", "--listen", "127.0.0.1:0")...)
	defer s.stop(t)

	check := openapicheck.New(t, gateway.OpenAPI())
	doc := check.Doc()
	if got, want := servedEndpoints(t, s), documentedOps(t, doc, true); !slices.Equal(got, want) {
		t.Errorf("serve's routes %q, the document's operations %q", got, want)
	}
	client := &http.Client{Transport: check.Transport(nil)}
	get := func(base, path string, h ...string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		for i := 0; i+1 < len(h); i += 2 {
			req.Header.Set(h[i], h[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close() // validates
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	waitReady(t, s.base)

	code, served := get(s.base, gateway.OpenAPIPath)
	if code != http.StatusOK || !bytes.Equal(served, gateway.OpenAPI()) {
		t.Errorf("GET /openapi.json: %d, the embedded document: %v", code, bytes.Equal(served, gateway.OpenAPI()))
	}
	for _, p := range []string{"/healthz", "/readyz", "/stats", "/metrics"} {
		if code, body := get(s.base, p); code != http.StatusOK {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
	}
	if code, body := get(s.base, "/metrics", "Accept", "application/openmetrics-text; version=1.0.0"); code != http.StatusOK || !strings.Contains(string(body), "eventbus_build_info") {
		t.Errorf("GET /metrics (OpenMetrics): %d %.200s", code, body)
	}
	post := func(auth string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.base+gateway.EventsPath,
			strings.NewReader(`{"specversion":"1.0","id":"o-1","source":"t","type":"openapi.served","data":{}}`))
		req.Header.Set("Content-Type", gateway.ContentTypeStructured)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post(apiKey); c != http.StatusAccepted {
		t.Errorf("POST /v1/events: %d, want 202", c)
	}
	if c := post(""); c != http.StatusUnauthorized {
		t.Errorf("POST /v1/events without a key: %d, want 401", c)
	}
	if c, body := get(s.base, gateway.StreamPath); c != http.StatusUnauthorized {
		t.Errorf("GET /v1/stream without a token: %d %s, want 401", c, body)
	}

	// Redis unreachable: serve starts anyway and /readyz answers 503, in
	// the document's shape.
	down := startServe(t, ctx, append(env, "REDIS_URL=redis://127.0.0.1:1"), with(global, "serve", "--listen", "127.0.0.1:0")...)
	defer down.stop(t)
	if c, body := get(down.base, "/readyz"); c != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz with Redis down: %d %s, want 503", c, body)
	}

	// Without the health endpoints, the routes are the gateway's own.
	bare := startServe(t, ctx, env, with(global, "serve", "--listen", "127.0.0.1:0", "--health=false")...)
	defer bare.stop(t)
	if got, want := servedEndpoints(t, bare), documentedOps(t, doc, false); !slices.Equal(got, want) {
		t.Errorf("serve --health=false routes %q, the document's gateway operations %q", got, want)
	}

	// Every documented status of serve's own endpoints was seen, except
	// /healthz 503: liveness fails only once the health router is closing,
	// that is while serve shuts down.
	seen := check.Seen()
	for _, k := range check.Documented(func(_ string, i *openapi3.PathItem) bool {
		return i.Extensions["x-eventbus-mounted-by"] == "serve"
	}) {
		if seen[k] == 0 && k != (openapicheck.Key{Method: "GET", Path: "/healthz", Status: 503}) {
			t.Errorf("%s: documented, never seen", k)
		}
	}
}

// checkedClients holds one checkedClient per test.
var checkedClients sync.Map // testing.TB -> *http.Client

// checkedClient is the HTTP client of the tests that talk to `eventbus
// serve`: every request it sends and every response it gets (when its body
// is closed) is validated against the gateway's OpenAPI document, and a
// mismatch fails t.
func checkedClient(t testing.TB) *http.Client {
	if c, ok := checkedClients.Load(t); ok {
		return c.(*http.Client)
	}
	c := &http.Client{Transport: openapicheck.New(t, gateway.OpenAPI()).Transport(nil)}
	checkedClients.Store(t, c)
	t.Cleanup(func() { checkedClients.Delete(t) })
	return c
}
