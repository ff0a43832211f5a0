package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
)

// One subtest per reserved attribute name (bus.ReservedAttributes, less
// deliverat, which ingress takes as a due time): an event that carries it is
// refused with 400 naming the field, in structured and in binary mode, and
// nothing is published. Before, "redrivegroup":"nobody" was accepted (202)
// and every handler acked the event unseen.
func TestIngressRefusesReservedAttributes(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, name := range bus.ReservedAttributes() {
		if name == bus.ExtDeliverAt {
			continue
		}
		t.Run(name, func(t *testing.T) {
			if name != bus.FieldData { // in structured mode "data" is the data member
				ev := map[string]any{"specversion": "1.0", "id": "r-1", "type": "good.event", "source": "s", "data": map[string]bool{"ok": true}, name: "nobody"}
				body, err := json.Marshal(ev)
				require.NoError(t, err)
				resp, b := e.post(gateway.ContentTypeStructured, string(body), nil)
				require.Equalf(t, http.StatusBadRequest, resp.StatusCode, "structured, body: %s", b)
				d := decodeError(t, b)
				assert.Equal(t, name, d.Field, "structured: field; message %s", d.Message)
				assert.Contains(t, d.Message, name)
			}
			resp, b := e.post("application/json", `{"ok":true}`, map[string]string{
				"ce-specversion": "1.0", "ce-id": "r-2", "ce-type": "good.event", "ce-source": "s", "ce-" + name: "nobody"})
			require.Equalf(t, http.StatusBadRequest, resp.StatusCode, "binary, body: %s", b)
			d := decodeError(t, b)
			assert.Equal(t, name, d.Field, "binary: field; message %s", d.Message)
			e.requireNothingPublished("good.event")
		})
	}
}

// In a batch, the event that carries a reserved attribute is named, and none
// of the batch is published.
func TestIngressBatchRefusesReservedAttribute(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, name := range []string{bus.AttrRedriveGroup, "_eventbus_group", "dlq_reason"} {
		body := `[{"specversion":"1.0","id":"b-1","type":"good.event","source":"s","data":{}},` +
			`{"specversion":"1.0","id":"b-2","type":"good.event","source":"s","data":{},"` + name + `":"nobody"}]`
		resp, b := e.post(gateway.ContentTypeBatch, body, nil)
		require.Equalf(t, http.StatusBadRequest, resp.StatusCode, "body: %s", b)
		d := decodeError(t, b)
		assert.Equal(t, name, d.Field, "message %s", d.Message)
		assert.Contains(t, d.Message, "event 2 of 2")
		e.requireNothingPublished("good.event")
	}
}
