package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/shared-infra/eventbus/bus"
)

// FuzzReadEvents feeds arbitrary bodies and CloudEvents headers to the
// ingress parser. It must never panic; it either refuses the request with
// 400 or 413 and the field at fault, or returns messages that the bus
// publisher's own checks accept (so a 202 is never followed by a refused
// write). No Redis is needed: parsing happens before anything is published.
func FuzzReadEvents(f *testing.F) {
	// The bus never dials Redis here: readEvents only parses and checks.
	b, err := bus.New(bus.Config{ServiceName: "fuzz", RedisURL: "redis://127.0.0.1:1/0"}, watermill.NopLogger{})
	if err != nil {
		f.Fatal(err)
	}
	defer b.Close()
	g, err := New(b, Config{
		Auth:    AuthConfig{HMACSecret: bytes.Repeat([]byte("k"), MinHMACSecretLen)},
		Ingress: IngressConfig{APIKeys: []string{"0123456789abcdef"}},
	}, watermill.NopLogger{})
	if err != nil {
		f.Fatal(err)
	}
	defer g.Close()

	f.Add(ContentTypeStructured, "", "", []byte(`{"specversion":"1.0","id":"1","source":"s","type":"photo.uploaded","data":{"a":1}}`))
	f.Add(ContentTypeBatch, "", "", []byte(`[{"specversion":"1.0","id":"1","source":"s","type":"a.b"},{"specversion":"1.0","id":"2","source":"s","type":"Bad..Type"}]`))
	f.Add("application/json", "1.0", "photo.uploaded", []byte(`{"photoId":"p"}`))
	f.Add("application/json", "1.0", "photo.uploaded", []byte(`{"photoId":`))
	f.Add(ContentTypeStructured, "", "", []byte(`{"specversion":"0.3","id":"","type":"x"}`))
	f.Add(ContentTypeBatch, "", "", []byte(`[]`))
	f.Add("text/plain", "", "", []byte("hello"))
	f.Fuzz(func(t *testing.T, contentType, specversion, typ string, body []byte) {
		r := httptest.NewRequest(http.MethodPost, EventsPath, bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		if specversion != "" {
			r.Header.Set("ce-specversion", specversion)
			r.Header.Set("ce-id", "fuzz-1")
			r.Header.Set("ce-source", "fuzz")
			r.Header.Set("ce-type", typ)
		}
		msgs, status, fe := g.readEvents(r, body)
		if fe != nil {
			if status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge {
				t.Fatalf("refused with status %d, want 400 or 413: %v", status, fe)
			}
			if fe.Err == nil {
				t.Fatal("a refusal without a reason")
			}
			return
		}
		if len(msgs) == 0 {
			t.Fatal("accepted a request with no event")
		}
		for _, m := range msgs {
			typ := m.Metadata.Get(bus.AttrType)
			if err := bus.ValidateType(typ); err != nil {
				t.Fatalf("accepted an event the bus refuses: %v", err)
			}
			if m.UUID == "" || m.Metadata.Get(bus.AttrSource) == "" {
				t.Fatalf("accepted an event without id or source: %+v", m.Metadata)
			}
			if bus.IsJSONContentType(m.Metadata.Get(bus.AttrDataContentType)) && len(m.Payload) > 0 && !jsonValid(m.Payload) {
				t.Fatalf("accepted invalid JSON data under %q", m.Metadata.Get(bus.AttrDataContentType))
			}
		}
	})
}

func jsonValid(b []byte) bool { return json.Valid(b) }
