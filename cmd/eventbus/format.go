package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/cejson"
)

// entry is one stream entry decoded for output.
type entry struct {
	StreamID  string
	Topic     string // the stream's event type
	Msg       *message.Message
	Malformed string // why the entry is not a valid event, if it is not
}

func decodeEntry(topic string, x redis.XMessage) entry {
	msg, _ := bus.Marshaller{}.Unmarshal(x.Values) // never fails: see bus.Marshaller
	e := entry{StreamID: x.ID, Topic: topic, Msg: msg}
	if reason, ok := bus.IsMalformed(msg); ok {
		e.Malformed = reason
	} else if t := msg.Metadata.Get(bus.AttrType); t != "" && t != topic {
		e.Malformed = fmt.Sprintf("type %q differs from its stream's type %q", t, topic)
	}
	return e
}

// JSON returns the entry as one line of JSON: the event in CloudEvents JSON,
// as the gateway's SSE stream has it (internal/cejson), with the Redis entry
// id as the member "streamid" when known. A malformed entry is written as
// {"streamid", "type", "malformed": reason, "fields": the raw entry}.
func (e entry) JSON() []byte {
	if e.Malformed != "" {
		return e.malformedJSON()
	}
	ev := cejson.Event(e.Msg)
	if ev.Type() == "" { // a watermill-redisstream entry may have none
		ev.SetType(e.Topic)
	}
	if e.StreamID != "" {
		ev.SetExtension("streamid", e.StreamID)
	}
	b, err := ev.MarshalJSON()
	if err != nil { // the SDK's writer fails only on a writer error
		return e.malformedJSON()
	}
	return b
}

// malformedJSON is JSON's form for an entry that is not a valid event.
func (e entry) malformedJSON() []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	n := 0
	field := func(k string, v []byte) {
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		writeJSONString(&b, k)
		b.WriteByte(':')
		b.Write(v)
	}
	str := func(s string) []byte {
		var sb bytes.Buffer
		writeJSONString(&sb, s)
		return sb.Bytes()
	}
	if e.StreamID != "" {
		field("streamid", str(e.StreamID))
	}
	field("type", str(e.Topic))
	field("malformed", str(e.Malformed))
	raw := e.Msg.Payload
	if _, ok := bus.IsMalformed(e.Msg); !ok { // a valid entry of the wrong stream
		raw, _ = json.Marshal(e.Msg.Metadata)
	}
	field("fields", compactJSON(raw))
	b.WriteByte('}')
	return b.Bytes()
}

// Pretty returns the entry as one line for people: time, type (padded to
// typeWidth), id, addressing and data.
func (e entry) Pretty(now time.Time, typeWidth int) string {
	md := e.Msg.Metadata
	t, err := time.Parse(time.RFC3339Nano, md.Get(bus.AttrTime))
	if err != nil {
		t = streamIDTime(e.StreamID)
	}
	t = t.Local()
	layout := "15:04:05.000"
	if y, m, d := t.Date(); y != now.Year() || m != now.Month() || d != now.Day() {
		layout = "2006-01-02 15:04:05.000"
	}
	var b strings.Builder
	b.WriteString(t.Format(layout))
	b.WriteString("  ")
	b.WriteString(e.Topic)
	if pad := typeWidth - len(e.Topic); pad > 0 {
		b.WriteString(strings.Repeat(" ", pad))
	}
	if e.Malformed != "" {
		fmt.Fprintf(&b, "  %s  MALFORMED (%s)  %s", e.StreamID, e.Malformed, truncate(string(compactJSON(e.Msg.Payload)), 300))
		return b.String()
	}
	b.WriteString("  ")
	b.WriteString(e.Msg.UUID)
	for _, k := range []string{bus.AttrSubject, bus.AttrRoom, bus.AttrUser} {
		if v := md.Get(k); v != "" {
			fmt.Fprintf(&b, "  %s=%s", k, v)
		}
	}
	if md.Get(bus.AttrBroadcast) == "true" {
		b.WriteString("  broadcast")
	}
	if data := e.Msg.Payload; len(data) > 0 {
		b.WriteString("  ")
		if json.Valid(data) {
			data = compactJSON(data)
		}
		if utf8.Valid(data) {
			b.WriteString(truncate(string(data), 300))
		} else {
			fmt.Fprintf(&b, "<%d bytes of %s>", len(data), md.Get(bus.AttrDataContentType))
		}
	}
	return b.String()
}

// compactJSON returns data without insignificant space (one line), or data
// as a JSON string if it is not JSON.
func compactJSON(data []byte) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		b.Reset()
		writeJSONString(&b, string(data))
	}
	return b.Bytes()
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a string always encodes
	b.Truncate(b.Len() - 1) // Encode's newline
}

// streamIDTime is the time in a stream entry id ("<ms>-<seq>").
func streamIDTime(id string) time.Time {
	ms, _, err := bus.ParseStreamID(id)
	if err != nil || ms > math.MaxInt64 {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms))
}
