package cejson_test

import (
	"encoding/json"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/shared-infra/eventbus/internal/cejson"
)

func msg(data string, md map[string]string) *message.Message {
	m := message.NewMessage("e1", []byte(data))
	m.Metadata = message.Metadata{
		"specversion": "1.0", "id": "e1", "type": "photo.uploaded", "source": "/uploader",
	}
	for k, v := range md {
		m.Metadata[k] = v
	}
	return m
}

func TestMarshal(t *testing.T) {
	const head = `{"specversion":"1.0","id":"e1","source":"/uploader","type":"photo.uploaded"`
	for _, tc := range []struct {
		name string
		msg  *message.Message
		want string
	}{
		{"attributes and JSON data", msg("{\n  \"photo\": \"p-1\", \"n\": 2\n}", map[string]string{
			"time": "2026-01-02T03:04:05.123456789Z", "datacontenttype": "application/json",
			"subject": "p-1", "dataschema": "https://example.com/s/1", "room": "album-7",
			"broadcast": "true", "_watermill_x": "local", "_eventbus_attempt": "2",
		}), head + `,"subject":"p-1","datacontenttype":"application/json","dataschema":"https://example.com/s/1",` +
			`"time":"2026-01-02T03:04:05.123456789Z","data":{"photo":"p-1","n":2},"broadcast":"true","room":"album-7"}`},
		{"no content type: JSON", msg(`[1, 2]`, nil), head + `,"data":[1,2]}`},
		{"no data", msg("", map[string]string{"user": "u"}), head + `,"user":"u"}`},
		{"binary", msg("\x00\x01\x02\xff", map[string]string{"datacontenttype": "application/octet-stream"}),
			head + `,"datacontenttype":"application/octet-stream","data_base64":"AAEC/w=="}`},
		{"text is not JSON: base64", msg("<disk full>", map[string]string{"datacontenttype": "text/plain"}),
			head + `,"datacontenttype":"text/plain","data_base64":"PGRpc2sgZnVsbD4="}`},
		{"invalid JSON under a JSON type: base64", msg("{", map[string]string{"datacontenttype": "application/json"}),
			head + `,"datacontenttype":"application/json","data_base64":"ew=="}`},
		{"a +json type: the JSON value", msg(`{"a": 1}`, map[string]string{"datacontenttype": "application/problem+json", "zeta": "z"}),
			head + `,"datacontenttype":"application/problem+json","data":{"a":1},"zeta":"z"}`},
		{"JSON with parameters", msg(`{"a":1}`, map[string]string{"datacontenttype": "application/json; charset=utf-8"}),
			head + `,"datacontenttype":"application/json; charset=utf-8","data":{"a":1}}`},
		{"strings pass unchanged", msg("", map[string]string{
			"source": "svc with space#x", "time": "2026-01-02T05:04:05+02:00", "note": "a<b>&\"\n\xff",
		}), `{"specversion":"1.0","id":"e1","source":"svc with space#x","type":"photo.uploaded",` +
			`"note":"a<b>&\"\n` + "\uFFFD" + `","time":"2026-01-02T05:04:05+02:00"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cejson.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("Marshal\n got %s\nwant %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

// The CLI adds the Redis entry id as a member; the id comes from the
// message's UUID.
func TestEventExtra(t *testing.T) {
	m := msg(`{}`, nil)
	m.UUID = "u-9"
	e := cejson.Event(m)
	e.SetExtension("streamid", "1-0")
	got, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"specversion":"1.0","id":"u-9","source":"/uploader","type":"photo.uploaded","data":{},"streamid":"1-0"}`
	if string(got) != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}
