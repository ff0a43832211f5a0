package gateway_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	wmhttp "github.com/ThreeDotsLabs/watermill-http/v2/pkg/http"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
)

func newIngressPublisher(t *testing.T, e *env, token, source string) *wmhttp.Publisher {
	t.Helper()
	pub, err := gateway.NewIngressPublisher(gateway.IngressPublisherConfig{
		URL:    e.srv.URL + gateway.EventsPath,
		Token:  token,
		Source: source,
	}, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

// A message published through the ingress publisher arrives in the bus
// with every attribute, extension and byte of data as it was sent.
func TestIngressPublisherRoundTrip(t *testing.T) {
	e := newEnv(t, envOpts{})
	pub := newIngressPublisher(t, e, testAPIKey, "/fallback")

	full := message.NewMessage("rt-1", []byte(`{"photo": "p-42", "bytes": 1234}`))
	full.Metadata = message.Metadata{
		"source":          "/uploader/web",
		"subject":         "p-42 ünïcode",
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
	}
	raw := []byte{0, 1, 2, 0xff, '\n', 'x'}
	blob := message.NewMessage("rt-2", raw)
	blob.Metadata = message.Metadata{
		"type":                  "photo.uploaded", // may repeat the topic
		"datacontenttype":       "application/octet-stream",
		"time":                  "2024-01-02T03:04:05Z",
		bus.MetaStreamID:        "1-0", // what a bus subscriber set: left out
		"_eventbus_redelivered": "x",
	}
	require.NoError(t, pub.Publish("photo.uploaded", full, blob))

	xs := e.entries(e.typeKey("photo.uploaded"))
	require.Len(t, xs, 2)
	want := map[string]string{
		"id": "rt-1", "type": "photo.uploaded", "specversion": "1.0",
		"data": `{"photo": "p-42", "bytes": 1234}`,
	}
	for k, v := range full.Metadata {
		want[k] = v
	}
	assert.Equal(t, want, fields(t, xs[0]))
	assert.Equal(t, map[string]string{
		"id": "rt-2", "type": "photo.uploaded", "specversion": "1.0", "source": "/fallback",
		"datacontenttype": "application/octet-stream", "time": "2024-01-02T03:04:05Z",
		"correlationid": "rt-2", // the one publish path: an event that starts a chain is its own correlation
		"data":          string(raw),
	}, fields(t, xs[1]))

	push := e.entries(e.pushKey())
	require.Len(t, push, 1, "only the addressed event")
	assert.Equal(t, want, fields(t, push[0]))
}

// The gateway's refusals come back as Publish errors, and nothing is
// published; what cannot be a CloudEvent is refused before any request.
func TestIngressPublisherErrors(t *testing.T) {
	e := newEnv(t, envOpts{})
	ev := func() *message.Message {
		m := message.NewMessage("pe-1", []byte(`{}`))
		m.Metadata.Set("source", "s")
		return m
	}

	err := newIngressPublisher(t, e, "wrong-key-0123456789", "").Publish("good.event", ev())
	require.ErrorIs(t, err, wmhttp.ErrErrorResponse)
	assert.Contains(t, err.Error(), "401")

	pub := newIngressPublisher(t, e, testAPIKey, "")
	bad := ev()
	bad.Payload = []byte(`{"broken":`)
	err = pub.Publish("good.event", bad)
	require.ErrorIs(t, err, wmhttp.ErrErrorResponse)
	assert.Contains(t, err.Error(), "400")

	var fe *gateway.FieldError
	require.ErrorAs(t, pub.Publish("Bad Type", ev()), &fe)
	assert.Equal(t, "type", fe.Field)
	noSource := message.NewMessage("pe-2", nil)
	require.ErrorAs(t, pub.Publish("good.event", noSource), &fe)
	assert.Equal(t, "source", fe.Field)

	e.requireNothingPublished("good.event")
}

func TestEventFromMessage(t *testing.T) {
	msg := func(md message.Metadata) *message.Message {
		m := message.NewMessage("id-1", []byte(`{"a":1}`))
		m.Metadata = message.Metadata{"source": "s"}
		for k, v := range md {
			m.Metadata[k] = v
		}
		return m
	}
	tests := []struct {
		name  string
		topic string
		md    message.Metadata
		field string // at fault; "" when valid
	}{
		{"minimal", "photo.uploaded", nil, ""},
		{"type from metadata", "", message.Metadata{"type": "photo.uploaded"}, ""},
		{"no type", "", nil, "type"},
		{"type differs from topic", "photo.uploaded", message.Metadata{"type": "photo.deleted"}, "type"},
		{"invalid type", "Photo..Uploaded", nil, "type"},
		{"id differs from UUID", "a.b", message.Metadata{"id": "other"}, "id"},
		{"old specversion", "a.b", message.Metadata{"specversion": "0.3"}, "specversion"},
		{"bad time", "a.b", message.Metadata{"time": "yesterday"}, "time"},
		{"upper-case extension", "a.b", message.Metadata{"tenantId": "x"}, "tenantId"},
		{"underscore extension", "a.b", message.Metadata{"correlation_id": "x"}, "correlation_id"},
		{"data key", "a.b", message.Metadata{"data": "x"}, "data"},
		{"internal keys left out", "a.b", message.Metadata{bus.MetaDelivery: "2"}, ""},
		{"no source", "a.b", message.Metadata{"source": ""}, "source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := gateway.EventFromMessage(tt.topic, msg(tt.md))
			if tt.field != "" {
				var fe *gateway.FieldError
				require.ErrorAs(t, err, &fe)
				assert.Equal(t, tt.field, fe.Field, "error: %v", err)
				assert.True(t, errors.Is(err, bus.ErrInvalidAttribute) || errors.Is(err, bus.ErrInvalidType), "error: %v", err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "id-1", e.ID())
			assert.Equal(t, `{"a":1}`, string(e.Data()))
			assert.Empty(t, e.Extensions())
			// And back: the message the gateway would publish.
			back, err := gateway.MessageFromEvent(e)
			require.NoError(t, err)
			assert.Equal(t, "s", back.Metadata.Get("source"))
			assert.Equal(t, "id-1", back.UUID)
		})
	}
}

func TestIngressPublisherConfigValidate(t *testing.T) {
	for _, u := range []string{"", "/v1/events", "ftp://h/v1/events", "http://"} {
		_, err := gateway.NewIngressPublisher(gateway.IngressPublisherConfig{URL: u}, nil)
		assert.Error(t, err, "URL %q", u)
	}
	_, err := gateway.NewIngressPublisher(gateway.IngressPublisherConfig{URL: "http://h/v1/events", Token: "a\nb"}, nil)
	assert.ErrorContains(t, err, "line break")
	_, err = gateway.NewIngressPublisher(gateway.IngressPublisherConfig{URL: "https://h" + gateway.EventsPath}, nil)
	assert.NoError(t, err)
}

// The publisher sends binary mode: attributes in ce-* headers, the
// datacontenttype as Content-Type, the payload as the body, the token as a
// Bearer header.
func TestIngressPublisherBinaryMode(t *testing.T) {
	got := make(chan *http.Request, 1)
	bodies := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- string(b)
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	pub, err := gateway.NewIngressPublisher(gateway.IngressPublisherConfig{URL: srv.URL + gateway.EventsPath, Token: "tok-123"}, nil)
	require.NoError(t, err)

	m := message.NewMessage("bm-1", []byte(`{"a":1}`))
	m.Metadata = message.Metadata{"source": "s", "datacontenttype": "application/json", "room": "lobby"}
	require.NoError(t, pub.Publish("photo.uploaded", m))

	r := <-got
	assert.Equal(t, http.MethodPost, r.Method)
	assert.Equal(t, gateway.EventsPath, r.URL.Path)
	assert.Equal(t, "Bearer tok-123", r.Header.Get("Authorization"))
	assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
	assert.Equal(t, "1.0", r.Header.Get("ce-specversion"))
	assert.Equal(t, "bm-1", r.Header.Get("ce-id"))
	assert.Equal(t, "photo.uploaded", r.Header.Get("ce-type"))
	assert.Equal(t, "lobby", r.Header.Get("ce-room"))
	assert.Equal(t, `{"a":1}`, <-bodies)
}
