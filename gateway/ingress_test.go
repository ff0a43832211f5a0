package gateway_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// fields returns an entry's values as strings.
func fields(t *testing.T, x redis.XMessage) map[string]string {
	t.Helper()
	out := make(map[string]string, len(x.Values))
	for k, v := range x.Values {
		s, ok := v.(string)
		require.Truef(t, ok, "field %s is %T", k, v)
		out[k] = s
	}
	return out
}

func decodeIDs(t *testing.T, resp *http.Response, body []byte) []string {
	t.Helper()
	require.Equalf(t, http.StatusAccepted, resp.StatusCode, "body: %s", body)
	var v struct {
		IDs []string `json:"ids"`
	}
	require.NoError(t, json.Unmarshal(body, &v))
	return v.IDs
}

func decodeError(t *testing.T, body []byte) gateway.ErrorDetail {
	t.Helper()
	var eb gateway.ErrorBody
	require.NoErrorf(t, json.Unmarshal(body, &eb), "body %s", body)
	return eb.Error
}

// Every attribute a structured-mode event carries arrives in the stream
// entry as the field of the same name, and data stays raw JSON.
func TestIngressStructured(t *testing.T) {
	e := newEnv(t, envOpts{})
	body := `{
		"specversion": "1.0",
		"id": "evt-structured-1",
		"type": "photo.uploaded",
		"source": "/uploader/web",
		"subject": "p-42",
		"time": "2024-05-06T07:08:09.123456789Z",
		"datacontenttype": "application/json",
		"dataschema": "https://schemas.example.com/photo-uploaded.json",
		"room": "album-7",
		"user": "alice",
		"broadcast": false,
		"correlationid": "corr-1",
		"causationid": "cause-1",
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"tracestate": "vendor=1",
		"tenant": "acme",
		"attempt": 3,
		"data": {"photo": "p-42", "bytes": 1234}
	}`
	resp, b := e.post(gateway.ContentTypeStructured, body, nil)
	require.Equal(t, []string{"evt-structured-1"}, decodeIDs(t, resp, b))

	xs := e.entries(e.typeKey("photo.uploaded"))
	require.Len(t, xs, 1)
	got := fields(t, xs[0])
	want := map[string]string{
		"specversion":     "1.0",
		"id":              "evt-structured-1",
		"type":            "photo.uploaded",
		"source":          "/uploader/web",
		"subject":         "p-42",
		"time":            "2024-05-06T07:08:09.123456789Z",
		"datacontenttype": "application/json",
		"dataschema":      "https://schemas.example.com/photo-uploaded.json",
		"room":            "album-7",
		"user":            "alice",
		"broadcast":       "false",
		"correlationid":   "corr-1",
		"causationid":     "cause-1",
		"traceparent":     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"tracestate":      "vendor=1",
		"tenant":          "acme",
		"attempt":         "3",
		"data":            `{"photo": "p-42", "bytes": 1234}`,
	}
	assert.Equal(t, want, got)

	// Addressed, so also in the push stream, with the same fields.
	push := e.entries(e.pushKey())
	require.Len(t, push, 1)
	assert.Equal(t, want, fields(t, push[0]))
}

// Binary mode: attributes from ce-* headers, Content-Type is the
// datacontenttype, the body is the data; W3C trace headers are kept.
func TestIngressBinary(t *testing.T) {
	e := newEnv(t, envOpts{})
	resp, b := e.post("application/json", `{"n":1}`, map[string]string{
		"ce-specversion":   "1.0",
		"ce-id":            "evt-binary-1",
		"ce-type":          "photo.processing.completed",
		"ce-source":        "urn:svc:resizer",
		"ce-subject":       "p-1",
		"ce-time":          "2024-01-02T03:04:05Z",
		"ce-user":          "bob",
		"ce-broadcast":     "true",
		"ce-correlationid": "corr-2",
		"traceparent":      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate":       "k=v",
	})
	require.Equal(t, []string{"evt-binary-1"}, decodeIDs(t, resp, b))

	xs := e.entries(e.typeKey("photo.processing.completed"))
	require.Len(t, xs, 1)
	assert.Equal(t, map[string]string{
		"specversion":     "1.0",
		"id":              "evt-binary-1",
		"type":            "photo.processing.completed",
		"source":          "urn:svc:resizer",
		"subject":         "p-1",
		"time":            "2024-01-02T03:04:05Z",
		"datacontenttype": "application/json",
		"user":            "bob",
		"broadcast":       "true",
		"correlationid":   "corr-2",
		"traceparent":     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate":      "k=v",
		"data":            `{"n":1}`,
	}, fields(t, xs[0]))
}

// Binary data (not JSON) goes through byte for byte, in both binary mode
// and structured mode (data_base64); a missing time is set by the bus.
func TestIngressNonJSONData(t *testing.T) {
	e := newEnv(t, envOpts{})
	raw := []byte{0, 1, 2, 0xff, '\n', 'x'}
	resp, b := e.post("application/octet-stream", string(raw), map[string]string{
		"ce-specversion": "1.0", "ce-id": "bin-1", "ce-type": "blob.stored", "ce-source": "s",
	})
	decodeIDs(t, resp, b)
	body := `{"specversion":"1.0","id":"bin-2","type":"blob.stored","source":"s","datacontenttype":"image/png","data_base64":"` +
		base64.StdEncoding.EncodeToString(raw) + `"}`
	resp, b = e.post(gateway.ContentTypeStructured, body, nil)
	decodeIDs(t, resp, b)

	xs := e.entries(e.typeKey("blob.stored"))
	require.Len(t, xs, 2)
	for _, x := range xs {
		f := fields(t, x)
		assert.Equal(t, string(raw), f["data"])
		_, err := time.Parse(time.RFC3339Nano, f["time"])
		assert.NoError(t, err, "time %q", f["time"])
	}
	assert.Equal(t, "application/octet-stream", fields(t, xs[0])["datacontenttype"])
	assert.Equal(t, "image/png", fields(t, xs[1])["datacontenttype"])
}

// A batch mixing types lands in each type's stream, and in the push stream
// in batch order; the answer lists the ids in batch order.
func TestIngressBatch(t *testing.T) {
	e := newEnv(t, envOpts{})
	body := `[
		{"specversion":"1.0","id":"b1","type":"photo.uploaded","source":"s","room":"r1","data":{"i":1}},
		{"specversion":"1.0","id":"b2","type":"photo.deleted","source":"s","user":"u1","correlationid":"c2","data":{"i":2}},
		{"specversion":"1.0","id":"b3","type":"photo.uploaded","source":"s","broadcast":true,"data":{"i":3}},
		{"specversion":"1.0","id":"b4","type":"photo.uploaded","source":"s","data":{"i":4}}
	]`
	resp, b := e.post(gateway.ContentTypeBatch, body, nil)
	require.Equal(t, []string{"b1", "b2", "b3", "b4"}, decodeIDs(t, resp, b))

	ids := func(xs []redis.XMessage) []string {
		var out []string
		for _, x := range xs {
			out = append(out, fields(t, x)["id"])
		}
		return out
	}
	assert.Equal(t, []string{"b1", "b3", "b4"}, ids(e.entries(e.typeKey("photo.uploaded"))))
	assert.Equal(t, []string{"b2"}, ids(e.entries(e.typeKey("photo.deleted"))))
	assert.Equal(t, []string{"b1", "b2", "b3"}, ids(e.entries(e.pushKey())), "push stream: addressed events, batch order")
	b2 := fields(t, e.entries(e.typeKey("photo.deleted"))[0])
	assert.Equal(t, "c2", b2["correlationid"])
	assert.Equal(t, "u1", b2["user"])
	assert.Equal(t, `{"i":2}`, b2["data"])
}

// Every refused request answers with the right status and the field at
// fault, and publishes nothing at all.
func TestIngressErrors(t *testing.T) {
	ok := `{"specversion":"1.0","id":"ok-1","type":"good.event","source":"s","room":"r","data":{"ok":true}}`
	type req struct {
		ct      string
		body    string
		headers map[string]string
	}
	tests := []struct {
		name   string
		opts   envOpts
		req    req
		status int
		field  string
		text   string // in the message
	}{
		{"bad type", envOpts{}, req{gateway.ContentTypeStructured,
			`{"specversion":"1.0","id":"x","type":"Photo..Uploaded","source":"s","data":{}}`, nil},
			400, "type", "tokens must match"},
		{"invalid JSON data (binary)", envOpts{}, req{"application/json", `{"broken":`, map[string]string{
			"ce-specversion": "1.0", "ce-id": "x", "ce-type": "good.event", "ce-source": "s"}},
			400, "data", "not valid JSON"},
		{"invalid JSON data (default content type)", envOpts{}, req{"", `not json`, map[string]string{
			"ce-specversion": "1.0", "ce-id": "x", "ce-type": "good.event", "ce-source": "s"}},
			400, "data", "not valid JSON"},
		{"missing source", envOpts{}, req{gateway.ContentTypeStructured,
			`{"specversion":"1.0","id":"x","type":"good.event","data":{}}`, nil},
			400, "source", "source"},
		{"bad broadcast", envOpts{}, req{gateway.ContentTypeStructured,
			`{"specversion":"1.0","id":"x","type":"good.event","source":"s","broadcast":"maybe","data":{}}`, nil},
			400, "broadcast", "true or false"},
		{"old specversion", envOpts{}, req{gateway.ContentTypeStructured,
			`{"specversion":"0.3","id":"x","type":"good.event","source":"s"}`, nil},
			400, "specversion", "1.0"},
		{"not a CloudEvent", envOpts{}, req{"application/json", `{"hello":"world"}`, nil},
			400, "Content-Type", "binary mode"},
		{"malformed structured JSON", envOpts{}, req{gateway.ContentTypeStructured, `{"specversion":"1.0",`, nil},
			400, "", "not a valid CloudEvent"},
		{"batch with a bad second event", envOpts{}, req{gateway.ContentTypeBatch,
			`[` + ok + `,{"specversion":"1.0","id":"y","type":"other.event","source":"s","data":{}},` +
				`{"specversion":"1.0","id":"z","type":"Bad Type","source":"s"}]`, nil},
			400, "type", "event 3 of 3"},
		{"batch with bad JSON in an event", envOpts{}, req{gateway.ContentTypeBatch,
			`[` + ok + `,{"specversion":"1.0","id":"y","type":"other.event","source":"s","datacontenttype":"text/plain","data":{}}]`, nil},
			400, "", "event 2 of 2"},
		{"empty batch", envOpts{}, req{gateway.ContentTypeBatch, `[]`, nil}, 400, "", "no events"},
		{"no credentials", envOpts{}, req{gateway.ContentTypeStructured, ok, map[string]string{"Authorization": ""}},
			401, "", "no credentials"},
		{"unknown API key", envOpts{}, req{gateway.ContentTypeStructured, ok, map[string]string{"Authorization": "Bearer not-the-key-0123456789"}},
			401, "", "bad credentials"},
		{"body too large", envOpts{gw: func(c *gateway.Config) { c.MaxBodyBytes = 200 }},
			req{gateway.ContentTypeStructured, `{"specversion":"1.0","id":"x","type":"good.event","source":"s","data":"` + strings.Repeat("x", 300) + `"}`, nil},
			413, "", "200 bytes"},
		{"body too large (chunked)", envOpts{gw: func(c *gateway.Config) { c.MaxBodyBytes = 200 }},
			req{gateway.ContentTypeStructured, "chunked:" + strings.Repeat("x", 300), nil},
			413, "", "200 bytes"},
		{"event too large for the bus", envOpts{bus: func(c *bus.Config) { c.MaxEventSize = 300 }},
			req{gateway.ContentTypeBatch, `[` + ok + `,{"specversion":"1.0","id":"x","type":"good.event","source":"s","data":"` + strings.Repeat("x", 400) + `"}]`, nil},
			413, "data", "exceeds the limit of 300 bytes"},
		{"batch over MaxBatchEvents", envOpts{gw: func(c *gateway.Config) { c.MaxBatchEvents = 1 }},
			req{gateway.ContentTypeBatch, `[` + ok + `,` + strings.Replace(ok, "ok-1", "ok-2", 1) + `]`, nil},
			413, "", "at most 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			var resp *http.Response
			var b []byte
			if body, ok := strings.CutPrefix(tt.req.body, "chunked:"); ok {
				resp, b = e.postChunked(tt.req.ct, body)
			} else {
				resp, b = e.post(tt.req.ct, tt.req.body, tt.req.headers)
			}
			require.Equalf(t, tt.status, resp.StatusCode, "body: %s", b)
			d := decodeError(t, b)
			assert.Equal(t, tt.status, d.Status)
			assert.Equal(t, tt.field, d.Field, "field; message: %s", d.Message)
			assert.Contains(t, d.Message, tt.text)
			e.requireNothingPublished("good.event", "other.event", "photo.uploaded")
		})
	}
}

// postChunked sends body without a Content-Length, so that only
// MaxBytesReader can stop it.
func (e *env) postChunked(ct, body string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+gateway.EventsPath, struct{ *strings.Reader }{strings.NewReader(body)})
	require.NoError(e.t, err)
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	req.Header.Set("Content-Type", ct)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp, buf.Bytes()
}

// A JWT may publish only with the publish grant: 403 without it.
func TestIngressJWT(t *testing.T) {
	e := newEnv(t, envOpts{})
	ev := `{"specversion":"1.0","id":"j1","type":"good.event","source":"s","data":{}}`

	noGrant := sign(t, jwt.SigningMethodHS256, testSecret, claims("svc-a", nil))
	resp, b := e.post(gateway.ContentTypeStructured, ev, map[string]string{"Authorization": "Bearer " + noGrant})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "body: %s", b)
	assert.Contains(t, decodeError(t, b).Message, "publish")
	e.requireNothingPublished("good.event")

	grant := sign(t, jwt.SigningMethodHS256, testSecret, claims("svc-a", jwt.MapClaims{"scope": "read publish"}))
	resp, b = e.post(gateway.ContentTypeStructured, ev, map[string]string{"Authorization": "Bearer " + grant})
	assert.Equal(t, []string{"j1"}, decodeIDs(t, resp, b))
}

// Past the burst, a client gets 429 and nothing is published; another
// client is not affected.
func TestIngressRateLimit(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.RateLimit = gateway.RateLimit{PerSecond: 0.01, Burst: 2}
		c.Ingress.APIKeys = append(c.Ingress.APIKeys, "second-api-key-0123456789")
	}})
	ev := func(id string) string {
		return `{"specversion":"1.0","id":"` + id + `","type":"good.event","source":"s","data":{}}`
	}
	for _, id := range []string{"r1", "r2"} {
		resp, b := e.post(gateway.ContentTypeStructured, ev(id), nil)
		decodeIDs(t, resp, b)
	}
	resp, b := e.post(gateway.ContentTypeStructured, ev("r3"), nil)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "body: %s", b)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.Contains(t, decodeError(t, b).Message, "rate limit")

	resp, b = e.post(gateway.ContentTypeStructured, ev("r4"), map[string]string{"Authorization": "Bearer second-api-key-0123456789"})
	decodeIDs(t, resp, b)

	var got []string
	for _, x := range e.entries(e.typeKey("good.event")) {
		got = append(got, fields(t, x)["id"])
	}
	assert.Equal(t, []string{"r1", "r2", "r4"}, got, "r3 was refused and not published")
}

// When Redis cannot be reached the answer is 503, and nothing is written.
func TestIngressRedisDown(t *testing.T) {
	ev := `[{"specversion":"1.0","id":"d1","type":"good.event","source":"s","room":"r","data":{}},` +
		`{"specversion":"1.0","id":"d2","type":"other.event","source":"s","data":{}}]`

	t.Run("closed client", func(t *testing.T) {
		// A dedicated client on the real Redis, closed: the streams
		// can be checked afterwards through the test's own client.
		redistest.Client(t) // fails the test, saying how to start one, if there is no Redis
		opts, err := redis.ParseURL(redistest.URL())
		require.NoError(t, err)
		dedicated := redis.NewClient(opts)
		e := newEnv(t, envOpts{client: dedicated, noRun: true})
		require.NoError(t, dedicated.Close())
		resp, b := e.post(gateway.ContentTypeBatch, ev, nil)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "body: %s", b)
		assert.Equal(t, "1", resp.Header.Get("Retry-After"))
		d := decodeError(t, b)
		assert.Contains(t, d.Message, "nothing was published")
		assert.NotContains(t, d.Message, "127.0.0.1", "no Redis details to the client")
		e.requireNothingPublished("good.event", "other.event")
	})
	t.Run("closed port", func(t *testing.T) {
		e := newEnv(t, envOpts{noRun: true, bus: func(c *bus.Config) {
			c.Client = nil
			c.RedisURL = "redis://127.0.0.1:1/0"
		}})
		resp, b := e.post(gateway.ContentTypeBatch, ev, nil)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "body: %s", b)
		// And the stream endpoint says so too, before the reader runs.
		_, sresp := e.dial(e.token("alice"), "", "", nil)
		assert.Equal(t, http.StatusServiceUnavailable, sresp.StatusCode)
	})
}

// UnmarshalCloudEvent has watermill-http's UnmarshalMessageFunc signature
// and yields the message the gateway publishes.
func TestUnmarshalCloudEvent(t *testing.T) {
	var fn func(topic string, r *http.Request) (*message.Message, error) = gateway.UnmarshalCloudEvent
	r := httptest.NewRequest(http.MethodPost, "/any", strings.NewReader(`{"a":1}`))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("ce-specversion", "1.0")
	r.Header.Set("ce-id", "u1")
	r.Header.Set("ce-type", "photo.uploaded")
	r.Header.Set("ce-source", "src")
	r.Header.Set("ce-room", "lobby")
	r.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	msg, err := fn("ignored", r)
	require.NoError(t, err)
	assert.Equal(t, "u1", msg.UUID)
	assert.Equal(t, `{"a":1}`, string(msg.Payload))
	assert.Equal(t, "lobby", msg.Metadata.Get("room"))
	assert.Equal(t, "photo.uploaded", msg.Metadata.Get("type"))
	assert.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", msg.Metadata.Get("traceparent"))

	r = httptest.NewRequest(http.MethodPost, "/any", strings.NewReader(`{}`))
	r.Header.Set("ce-specversion", "1.0")
	r.Header.Set("ce-id", "u2")
	r.Header.Set("ce-type", "Bad")
	r.Header.Set("ce-source", "src")
	_, err = gateway.UnmarshalCloudEvent("", r)
	var fe *gateway.FieldError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, "type", fe.Field)
	assert.ErrorIs(t, err, bus.ErrInvalidType)
}
