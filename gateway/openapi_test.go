package gateway_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/internal/openapicheck"
)

// The embedded document is OpenAPI 3.1 and valid (kin-openapi's loader and
// validator, which know 3.1).
func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc, err := openapicheck.Load(gateway.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsOpenAPI31OrLater() || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi is %q, want 3.1.0", doc.OpenAPI)
	}
}

// mountedByServe reports whether a path of the document is one eventbus
// serve mounts (x-eventbus-mounted-by: serve) rather than the gateway.
func mountedByServe(item *openapi3.PathItem) bool {
	return item.Extensions["x-eventbus-mounted-by"] == "serve"
}

// documentedRoutes are the document's operations as ServeMux patterns,
// without the OPTIONS ones (CORS answers preflights before the mux).
func documentedRoutes(t *testing.T, keep func(*openapi3.PathItem) bool) []string {
	t.Helper()
	doc, err := openapicheck.Load(gateway.OpenAPI())
	require.NoError(t, err)
	var out []string
	for path, item := range doc.Paths.Map() {
		if !keep(item) {
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

// Every route the gateway registers on its mux is in the document, and
// every operation of the document that is not marked as mounted by serve is
// registered. (serve's own routes are checked the same way against the
// binary: TestServeRoutesMatchOpenAPI in cmd/eventbus.)
func TestOpenAPIRoutesMatchTheMux(t *testing.T) {
	e := newEnv(t, envOpts{noRun: true})
	routes := e.gw.Routes()
	slices.Sort(routes)
	assert.Equal(t, documentedRoutes(t, func(i *openapi3.PathItem) bool { return !mountedByServe(i) }), routes)
	for _, p := range []string{gateway.EventsPath, gateway.StreamPath} {
		doc, err := openapicheck.Load(gateway.OpenAPI())
		require.NoError(t, err)
		assert.NotNilf(t, doc.Paths.Find(p).Options, "%s: the CORS preflight is not documented", p)
	}
}

// GET /openapi.json serves the embedded document.
func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t, envOpts{noRun: true})
	resp, err := http.Get(e.srv.URL + gateway.OpenAPIPath)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Equal(t, gateway.OpenAPI(), b)
}

// noFlush is a ResponseWriter that cannot flush: the stream endpoint
// answers 500 on it.
type noFlush struct {
	h      http.Header
	status int
	body   strings.Builder
}

func (w *noFlush) Header() http.Header         { return w.h }
func (w *noFlush) WriteHeader(code int)        { w.status = code }
func (w *noFlush) Write(b []byte) (int, error) { return w.body.WriteString(string(b)) }

// Every status the document gives the gateway's own operations is
// produced by the real handler on a real Redis, and every exchange
// validates against the document (newEnv's server checks each one; this
// test then checks that nothing documented went unseen).
func TestOpenAPIEveryRouteAndStatus(t *testing.T) {
	do := func(e *env, method, path, body string, h map[string]string) int {
		t.Helper()
		req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	const good = `{"specversion":"1.0","id":"o-1","source":"openapi-test","type":"openapi.checked","data":{"n":1}}`
	key := map[string]string{"Authorization": "Bearer " + testAPIKey, "Content-Type": gateway.ContentTypeStructured}
	with := func(h map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range h {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}

	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.MaxBodyBytes = 4096
		c.AllowedOrigins = []string{"https://app.example.com"}
	}})

	// POST /v1/events.
	assert.Equal(t, 202, do(e, "POST", gateway.EventsPath, good, key), "structured")
	assert.Equal(t, 202, do(e, "POST", gateway.EventsPath, "["+good+","+strings.Replace(good, "o-1", "o-2", 1)+"]",
		with(key, "Content-Type", gateway.ContentTypeBatch)), "batch")
	assert.Equal(t, 202, do(e, "POST", gateway.EventsPath, `{"n":2}`, with(key, "Content-Type", "application/json",
		"ce-specversion", "1.0", "ce-id", "o-3", "ce-type", "openapi.checked", "ce-source", "openapi-test")), "binary")
	assert.Equal(t, 400, do(e, "POST", gateway.EventsPath, "hello", with(key, "Content-Type", "text/plain")), "no CloudEvent")
	assert.Equal(t, 400, do(e, "POST", gateway.EventsPath, `{"specversion":"1.0"`, key), "malformed JSON")
	assert.Equal(t, 400, do(e, "POST", gateway.EventsPath, strings.Replace(good, "openapi.checked", "Bad Type", 1), key), "bad type")
	assert.Equal(t, 401, do(e, "POST", gateway.EventsPath, good, with(key, "Authorization", "")), "no credentials")
	assert.Equal(t, 401, do(e, "POST", gateway.EventsPath, good, with(key, "Authorization", "Bearer not-a-known-key-at-all")), "unknown key")
	assert.Equal(t, 403, do(e, "POST", gateway.EventsPath, good, with(key, "Authorization", "Bearer "+e.token("alice"))), "JWT without publish")
	assert.Equal(t, 413, do(e, "POST", gateway.EventsPath, `{"specversion":"1.0","id":"big","source":"s","type":"openapi.checked","data":"`+strings.Repeat("x", 5000)+`"}`, key), "too large")
	require.NoError(t, e.rdb.Set(context.Background(), e.typeKey("openapi.wrongtype"), "not a stream", 0).Err())
	assert.Equal(t, 500, do(e, "POST", gateway.EventsPath, strings.Replace(good, "openapi.checked", "openapi.wrongtype", 1), key), "WRONGTYPE")
	assert.Equal(t, 204, do(e, "OPTIONS", gateway.EventsPath, "", map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}), "preflight")
	assert.Equal(t, 405, do(e, "OPTIONS", gateway.EventsPath, "", nil), "OPTIONS, no preflight")

	// GET /v1/stream.
	c := e.connect(e.token("alice", "lobby"), "lobby", "")
	e.publish("openapi.checked", map[string]int{"n": 4}, bus.WithRoom("lobby"))
	_ = c.eventsUntil("openapi.checked", 10*time.Second)
	c.close()
	tok := e.token("bob", "lobby")
	_, resp := e.dial(tok, "lobby", "not-an-id", nil)
	assert.Equal(t, 400, resp.StatusCode, "bad Last-Event-ID")
	_, resp = e.dial("", "lobby", "", nil)
	assert.Equal(t, 401, resp.StatusCode, "no token")
	_, resp = e.dial("not.a.jwt", "lobby", "", nil)
	assert.Equal(t, 401, resp.StatusCode, "bad token")
	assert.Equal(t, 204, do(e, "OPTIONS", gateway.StreamPath, "", map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}), "preflight")
	assert.Equal(t, 405, do(e, "OPTIONS", gateway.StreamPath, "", nil), "OPTIONS, no preflight")
	// A server that cannot flush: 500 (through the checker, without a
	// network server, whose writers always flush).
	nf := &noFlush{h: http.Header{}}
	req := httptest.NewRequest("GET", gateway.StreamPath+"?access_token="+tok, nil)
	e.check.Handler(e.gw.Handler()).ServeHTTP(nf, req)
	assert.Equal(t, 500, nf.status, "cannot flush: %s", nf.body.String())

	// GET /openapi.json.
	assert.Equal(t, 200, do(e, "GET", gateway.OpenAPIPath, "", nil))

	// 429: a limit of one request per principal.
	limited := newEnv(t, envOpts{noRun: true, gw: func(c *gateway.Config) {
		c.RateLimit = gateway.RateLimit{PerSecond: 0.001, Burst: 1, PerProcess: true}
	}})
	assert.Equal(t, 202, do(limited, "POST", gateway.EventsPath, good, key))
	assert.Equal(t, 429, do(limited, "POST", gateway.EventsPath, good, key))

	// 503: the stream before the reader runs; ingress once closed.
	closed := newEnv(t, envOpts{noRun: true})
	_, resp = closed.dial(tok, "lobby", "", nil)
	assert.Equal(t, 503, resp.StatusCode, "stream before Run")
	require.NoError(t, closed.gw.Close())
	assert.Equal(t, 503, do(closed, "POST", gateway.EventsPath, good, key), "ingress after Close")

	// Each exchange is recorded when its handler returns: close the
	// servers (which waits for the handlers), then count.
	seen := map[openapicheck.Key]int{}
	for _, x := range []*env{e, limited, closed} {
		x.srv.Close()
		for k, n := range x.check.Seen() {
			seen[k] += n
		}
	}
	t.Logf("seen: %v", seenList(seen))
	var missing []string
	for _, k := range e.check.Documented(func(_ string, i *openapi3.PathItem) bool { return !mountedByServe(i) }) {
		if seen[k] == 0 {
			missing = append(missing, k.String())
		}
	}
	assert.Emptyf(t, missing, "documented but never produced by the tests (seen: %v)", seenList(seen))
}

func seenList(m map[openapicheck.Key]int) []string {
	var out []string
	for k := range m {
		out = append(out, k.String())
	}
	slices.Sort(out)
	return out
}
