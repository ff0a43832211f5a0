// Package cejson renders a bus event (a Watermill message as bus.Marshaller
// decodes it) in CloudEvents structured-mode JSON, with the CloudEvents SDK.
// It is the one encoder behind the gateway's SSE stream and
// `eventbus tail --json`, so both show the same event as the same bytes.
//
// The rules (docs/wire-format.md, "CloudEvents JSON"):
//   - every attribute and extension (metadata key not starting with "_") is a
//     string member holding its stored string unchanged;
//   - the members come in the SDK's order: specversion, id, source, type,
//     subject, datacontenttype, dataschema, time, data or data_base64, then
//     the extensions sorted by name;
//   - data is "data", the JSON value (compacted to one line), when the
//     content type is JSON (or absent) and the data is valid JSON; any other
//     data is "data_base64";
//   - the output has no line break, so it is one SSE data line.
package cejson

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/shared-infra/eventbus/bus"
)

// Event converts msg to a CloudEvent (spec version 1.0) by the package's
// rules. The id is msg.UUID (the "id" attribute when UUID is empty). Extra
// members may be added with SetExtension before marshalling it.
func Event(msg *message.Message) *event.Event {
	e := event.New(event.CloudEventsVersionV1)
	ec := e.Context.(*event.EventContextV1)
	ec.Extensions = make(map[string]any, len(msg.Metadata))
	md := msg.Metadata
	for k, v := range md {
		v = strings.ToValidUTF8(v, "\uFFFD") // the SDK's JSON writer copies bytes as they are
		switch k {
		case bus.AttrSpecVersion, bus.AttrID:
			// spec version 1.0 (what the bus writes); the id below
		case bus.AttrSource:
			ec.Source = types.URIRef{URL: verbatimURL(v)}
		case bus.AttrType:
			ec.Type = v
		case bus.AttrSubject:
			ec.Subject = &v
		case bus.AttrDataContentType:
			ec.DataContentType = &v
		case bus.AttrDataSchema:
			ec.DataSchema = &types.URI{URL: verbatimURL(v)}
		case bus.AttrTime:
			if t, err := types.ParseTime(v); err == nil && types.FormatTime(t) == v {
				ec.Time = &types.Timestamp{Time: t}
			} else {
				// Not in the SDK's canonical form: the SDK would rewrite
				// or refuse it, so it goes out unchanged as a member of the
				// same name (written among the extensions).
				ec.Extensions[k] = v
			}
		case bus.FieldData, "data_base64":
			// not attributes: the data members are the payload's
		default:
			if !strings.HasPrefix(k, "_") { // local metadata (Watermill's, the bus's)
				ec.Extensions[k] = v
			}
		}
	}
	ec.ID = msg.UUID
	if ec.ID == "" {
		ec.ID = md.Get(bus.AttrID)
	}
	setData(&e, md.Get(bus.AttrDataContentType), msg.Payload)
	return &e
}

// Marshal returns msg in CloudEvents JSON: Event(msg) marshalled by the SDK.
func Marshal(msg *message.Message) ([]byte, error) {
	return Event(msg).MarshalJSON()
}

// setData stores data in e by the package's rule.
func setData(e *event.Event, ct string, data []byte) {
	if len(data) == 0 {
		return
	}
	ec := e.Context.(*event.EventContextV1)
	var compact bytes.Buffer
	if (ct == "" || bus.IsJSONContentType(ct)) && json.Compact(&compact, data) == nil {
		if sdkJSON(ct) {
			e.DataEncoded, e.DataBase64 = compact.Bytes(), false
			return
		}
		// The SDK (v2.16) writes raw JSON data only for the four media
		// types it knows (application/json, text/json and the two
		// cloudevents ones), and any other "+json" data as a JSON string.
		// The CloudEvents JSON format wants the JSON value for every JSON
		// type, so it goes in as a raw member named "data" (written among
		// the extensions).
		ec.Extensions[bus.FieldData] = json.RawMessage(compact.Bytes())
		return
	}
	e.DataEncoded, e.DataBase64 = data, true
}

// sdkJSON reports whether the SDK's JSON writer treats ct as JSON.
func sdkJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	switch strings.ToLower(strings.TrimSpace(mt)) {
	case "", event.ApplicationJSON, event.TextJSON, event.ApplicationCloudEventsJSON, event.ApplicationCloudEventsBatchJSON:
		return true
	}
	return false
}

// verbatimURL returns a URL whose String() is s, byte for byte: parsing and
// re-rendering a URL may re-escape it, and an attribute keeps its stored
// string. (url.URL.String writes Opaque as it is when there is no scheme.)
func verbatimURL(s string) url.URL {
	return url.URL{Opaque: s}
}
