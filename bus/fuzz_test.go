package bus_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/shared-infra/eventbus/bus"
)

// Run one of these with, for example:
//
//	go test -run '^$' -fuzz '^FuzzMatch$' -fuzztime 20s ./bus/
//
// Crashers the fuzzer finds are kept under testdata/fuzz/<FuzzName>/ and are
// run as ordinary test cases by `go test`.

// refValidToken reports whether tok is one or more of [a-z0-9_-].
func refValidToken(tok string) bool {
	if tok == "" {
		return false
	}
	for _, c := range []byte(tok) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// refValidType is the slow, obviously right reading of the type syntax.
func refValidType(s string) bool {
	if len(s) < 1 || len(s) > bus.MaxTypeLength {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if !refValidToken(tok) {
			return false
		}
	}
	return true
}

// refValidPattern is the slow reading of the pattern syntax.
func refValidPattern(s string) bool {
	if len(s) < 1 || len(s) > bus.MaxTypeLength {
		return false
	}
	toks := strings.Split(s, ".")
	for i, tok := range toks {
		switch {
		case tok == "*":
		case tok == ">" && i == len(toks)-1:
		case !refValidToken(tok):
			return false
		}
	}
	return true
}

// refMatch matches token lists the NATS way: "*" is exactly one token, ">"
// (last only) one or more.
func refMatch(p, t []string) bool {
	if len(p) == 0 {
		return len(t) == 0
	}
	if len(t) == 0 {
		return false
	}
	switch p[0] {
	case ">":
		return true // len(t) >= 1
	case "*":
		return refMatch(p[1:], t[1:])
	default:
		return p[0] == t[0] && refMatch(p[1:], t[1:])
	}
}

func refHasWildcard(s string) bool {
	for _, tok := range strings.Split(s, ".") {
		if tok == "*" || tok == ">" {
			return true
		}
	}
	return false
}

// fromAlphabet maps arbitrary bytes onto a small alphabet, so that the fuzzer
// produces mostly valid, often matching, types and patterns.
func fromAlphabet(b []byte, alphabet string) string {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = alphabet[int(c)%len(alphabet)]
	}
	return string(out)
}

func FuzzValidateType(f *testing.F) {
	for _, s := range []string{
		"photo.uploaded", "photo.processing.completed", "a", "a_b-c.0", "0", "-", "_",
		strings.Repeat("a", 255), strings.Repeat("a", 256), strings.Repeat("a.", 127) + "a", strings.Repeat("a.", 128),
		"", ".", "..", "photo.", ".photo", "photo..x", "Photo.uploaded", "photo.*", "photo.>", "*", ">",
		"photo uploaded", "photo:uploaded", "photo\x00", "фото", "photo.a*", "\xff", "photo.\t",
		"events:photo", "$types", "photo.uploaded\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := bus.ValidateType(s)
		want := refValidType(s)
		if want != (err == nil) {
			t.Fatalf("ValidateType(%q) = %v, reference says valid=%v", s, err, want)
		}
		if err != nil {
			if !errors.Is(err, bus.ErrInvalidType) {
				t.Fatalf("ValidateType(%q) error %v does not wrap ErrInvalidType", s, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprintf("%q", s)) {
				t.Fatalf("ValidateType(%q) error %q does not quote the input", s, msg)
			}
			if !strings.Contains(msg, "must not be empty") && !strings.Contains(msg, "the limit is 255") &&
				!strings.Contains(msg, "empty token") && !strings.Contains(msg, "[a-z0-9_-]+") {
				t.Fatalf("ValidateType(%q) error %q does not say what is allowed", s, msg)
			}
			return
		}
		// A valid type is a valid pattern, is no pattern, matches itself, and ">".
		if perr := bus.ValidatePattern(s); perr != nil {
			t.Fatalf("valid type %q is not a valid pattern: %v", s, perr)
		}
		if bus.IsPattern(s) {
			t.Fatalf("valid type %q is reported as a pattern", s)
		}
		if !bus.Match(s, s) {
			t.Fatalf("valid type %q does not match itself", s)
		}
		if !bus.Match(">", s) {
			t.Fatalf("\">\" does not match valid type %q", s)
		}
	})
}

func FuzzValidatePattern(f *testing.F) {
	for _, s := range []string{
		">", "*", "*.*", "photo.*", "photo.>", "*.uploaded", "photo.*.completed", "photo.uploaded", "*.>", "*.*.>",
		"", ".", ">.", ".>", ">.x", "photo.>.x", "photo.>.>", ">>", "**", "photo.a*", "photo.*a", "photo..*",
		"Photo.*", "photo.*.", "photo.> ", strings.Repeat("*.", 127) + ">", strings.Repeat("*.", 128) + ">",
		strings.Repeat("a", 255), strings.Repeat("a", 256), "\x00", "photo.\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := bus.ValidatePattern(s)
		want := refValidPattern(s)
		if want != (err == nil) {
			t.Fatalf("ValidatePattern(%q) = %v, reference says valid=%v", s, err, want)
		}
		if err != nil {
			if !errors.Is(err, bus.ErrInvalidPattern) {
				t.Fatalf("ValidatePattern(%q) error %v does not wrap ErrInvalidPattern", s, err)
			}
			if !strings.Contains(err.Error(), `a token may be "*"`) {
				t.Fatalf("ValidatePattern(%q) error %q does not explain the syntax", s, err)
			}
			return
		}
		if bus.IsPattern(s) != refHasWildcard(s) {
			t.Fatalf("IsPattern(%q) = %v, want %v", s, bus.IsPattern(s), refHasWildcard(s))
		}
		// A valid pattern without wildcards is exactly a valid type.
		if !refHasWildcard(s) && bus.ValidateType(s) != nil {
			t.Fatalf("wildcard-free valid pattern %q is not a valid type: %v", s, bus.ValidateType(s))
		}
		if refHasWildcard(s) && bus.ValidateType(s) == nil {
			t.Fatalf("pattern %q with a wildcard is accepted as an event type", s)
		}
	})
}

func FuzzMatch(f *testing.F) {
	seeds := [][2]string{
		{"photo.*", "photo.uploaded"},
		{"photo.*", "photo.processing.completed"},
		{"photo.*", "photo"},
		{"photo.>", "photo.uploaded"},
		{"photo.>", "photo.processing.completed"},
		{"photo.>", "photo"},
		{"photo.>", "photos.uploaded"},
		{">", "photo"},
		{"*", "photo.uploaded"},
		{"*.*", "photo"},
		{"*.uploaded", "video.uploaded"},
		{"*.>", "photo"},
		{"photo.*.completed", "photo.processing.completed"},
		{"photo.uploaded", "photo.uploaded2"},
		{"photo", "photo.uploaded"},
		{"a.b", "a.b."},
		{"", ""},
		{".", "."},
		{"a.>", "a."},
		{">.>", "a.b"},
		{"*.", "a."},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, p, typ string) {
		// Never panics, whatever the input (valid or not).
		got := bus.Match(p, typ)
		check := func(p, typ string, got bool) {
			if bus.ValidatePattern(p) != nil || bus.ValidateType(typ) != nil {
				return
			}
			if want := refMatch(strings.Split(p, "."), strings.Split(typ, ".")); got != want {
				t.Fatalf("Match(%q, %q) = %v, reference says %v", p, typ, got, want)
			}
		}
		check(p, typ, got)
		if bus.ValidateType(typ) == nil {
			if !bus.Match(typ, typ) {
				t.Fatalf("valid type %q does not match itself", typ)
			}
			if !bus.Match(">", typ) {
				t.Fatalf("\">\" does not match valid type %q", typ)
			}
		}
		// The same bytes over a tiny alphabet: mostly valid, often matching.
		sp := fromAlphabet([]byte(p), "ab.*>")
		st := fromAlphabet([]byte(typ), "ab.")
		check(sp, st, bus.Match(sp, st))
		if bus.ValidateType(st) == nil && (!bus.Match(st, st) || !bus.Match(">", st)) {
			t.Fatalf("valid type %q: Match(itself)=%v Match(\">\")=%v", st, bus.Match(st, st), bus.Match(">", st))
		}
	})
}

// Field-map encoding for FuzzUnmarshal: raw holds records separated by 0x1e,
// each a key, 0x1f and the value. kinds picks each record's Go type, three
// bits per record in order (0-3 string, 4-5 []byte, 6 int64, 7 nil), so the
// fuzzer also tries the non-string values an Unmarshaller may be handed by
// code other than go-redis (which always gives strings).
const (
	recSep   = 0x1e
	fieldSep = 0x1f
)

func encodeFields(kv ...string) []byte {
	var b bytes.Buffer
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(recSep)
		}
		b.WriteString(kv[i])
		b.WriteByte(fieldSep)
		b.WriteString(kv[i+1])
	}
	return b.Bytes()
}

func decodeFields(raw []byte, kinds uint64) map[string]any {
	values := map[string]any{}
	if len(raw) == 0 {
		return values
	}
	i := 0
	for rec := range bytes.SplitSeq(raw, []byte{recSep}) {
		k, v, _ := bytes.Cut(rec, []byte{fieldSep})
		var val any
		switch kind := (kinds >> (3 * (i % 21))) & 7; {
		case kind < 4:
			val = string(v)
		case kind < 6:
			val = bytes.Clone(v)
		case kind == 6:
			val = int64(len(v))
		default:
			val = nil
		}
		values[string(k)] = val
		i++
	}
	return values
}

// wire turns what Marshal returns into what XRANGE/XREADGROUP gives back
// through go-redis: every value a string.
func wire(t *testing.T, values map[string]any) map[string]any {
	out := make(map[string]any, len(values))
	for k, v := range values {
		switch v := v.(type) {
		case string:
			out[k] = v
		case []byte:
			out[k] = string(v)
		default:
			t.Fatalf("Marshal wrote field %q as %T, which Redis would not store as it is", k, v)
		}
	}
	return out
}

func FuzzUnmarshal(f *testing.F) {
	valid := encodeFields("id", "e1", "type", "photo.uploaded", "source", "svc", "specversion", "1.0", "data", `{"a":1}`)
	f.Add(valid, uint64(0), "e1", "subject", "p1", []byte(`{"a":1}`))
	f.Add(valid, uint64(0o40000), "e1", "subject", "p1", []byte(`{"a":1}`)) // data as []byte
	f.Add(valid, uint64(0o7), "", "", "", []byte(nil))                      // id nil
	f.Add(valid, uint64(0o60), "", "", "", []byte(nil))                     // type int64
	f.Add(encodeFields("garbage", "1"), uint64(0), "", "", "", []byte(nil))
	f.Add([]byte{}, uint64(0), "id-2", "room", "", []byte{})
	f.Add(encodeFields("id", "e1", "type", "Photo..x", "source", "svc", "specversion", "1.0"), uint64(0), "x", "x-custom", "v", []byte("\x00\xff"))
	f.Add(encodeFields("id", "e1", "type", "photo.uploaded", "source", "svc", "specversion", "1.0", "data", "\x00raw"), uint64(0), "", "data", "x", []byte("p"))
	f.Add(encodeFields("id", "e1", "type", "photo.uploaded", "source", "svc", "specversion", "1.0", "_eventbus_topic", "x"), uint64(0), "e", "_eventbus_x", "v", []byte("p"))
	f.Add(encodeFields("id", "e1", "type", "photo.uploaded"), uint64(0), "e", "_watermill_message_uuid", "v", []byte("p"))
	f.Add(encodeFields("id", "", "type", ""), uint64(0), "e", "type", "video.uploaded", []byte("p"))
	// watermill-redisstream's default format: uuid, msgpack metadata, payload.
	legacy := encodeFields("_watermill_message_uuid", "u1", "payload", "hello", "metadata", "\x81\xa1k\xa1v")
	f.Add(legacy, uint64(0), "u1", "k", "v", []byte("hello"))
	f.Add(legacy, uint64(0o700), "u1", "k", "v", []byte("hello")) // metadata nil
	f.Add(encodeFields("_watermill_message_uuid", "u1"), uint64(0), "u1", "k", "v", []byte(""))
	f.Add(encodeFields("_watermill_message_uuid", ""), uint64(0o7), "", "", "", []byte(nil))
	f.Add(encodeFields("_watermill_message_uuid", "u1", "metadata", "\xc1"), uint64(0), "", "", "", []byte(nil))
	f.Add(encodeFields("_watermill_message_uuid", "u1", "metadata", "\xdf\xff\xff\xff\xff"), uint64(0), "", "", "", []byte(nil))

	f.Fuzz(func(t *testing.T, raw []byte, kinds uint64, id, key, val string, payload []byte) {
		values := decodeFields(raw, kinds)
		unmarshal := func(values map[string]any) (msg *message.Message, err error) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("Unmarshal(%#v) panicked: %v", values, r)
				}
			}()
			return bus.Marshaller{}.Unmarshal(values)
		}
		msg, err := unmarshal(values)
		if err != nil {
			t.Fatalf("Unmarshal(%#v) returned an error (it must mark the entry malformed instead): %v", values, err)
		}
		if msg == nil {
			t.Fatalf("Unmarshal(%#v) returned no message", values)
		}
		if _, bad := bus.IsMalformed(msg); !bad {
			if bus.ValidateType(msg.Metadata.Get(bus.AttrType)) != nil && values["_watermill_message_uuid"] == nil {
				t.Fatalf("Unmarshal(%#v) accepted an event with invalid type %q", values, msg.Metadata.Get(bus.AttrType))
			}
		}

		// Round trip of a valid message through Marshal, Redis's string
		// values and Unmarshal.
		if id == "" {
			return
		}
		in := message.NewMessage(id, payload)
		in.Metadata.Set(bus.AttrType, "photo.uploaded")
		in.Metadata.Set(bus.AttrSource, "svc")
		in.Metadata.Set(bus.AttrSpecVersion, bus.SpecVersion)
		switch key {
		case bus.AttrID, bus.AttrType, bus.AttrSource, bus.AttrSpecVersion, "":
			// required attributes are set above
		default:
			in.Metadata.Set(key, val)
		}
		fields, err := bus.Marshaller{}.Marshal("photo.uploaded", in)
		if err != nil {
			if key == bus.FieldData || key == "_watermill_message_uuid" {
				return // reserved keys are refused, as they must be
			}
			t.Fatalf("Marshal of a valid message (extra key %q) failed: %v", key, err)
		}
		out, err := unmarshal(wire(t, fields))
		if err != nil {
			t.Fatalf("Unmarshal after Marshal: %v", err)
		}
		if reason, bad := bus.IsMalformed(out); bad {
			t.Fatalf("round trip of a valid message (extra key %q) came back malformed: %s", key, reason)
		}
		if out.UUID != id {
			t.Fatalf("round trip changed the id: %q -> %q", id, out.UUID)
		}
		if !bytes.Equal(out.Payload, payload) {
			t.Fatalf("round trip changed the payload: %q -> %q", payload, out.Payload)
		}
		want := maps.Clone(in.Metadata)
		for k := range want {
			if strings.HasPrefix(k, "_eventbus_") {
				delete(want, k) // internal keys are never written
			}
		}
		want[bus.AttrID] = id
		if !maps.Equal(map[string]string(want), map[string]string(out.Metadata)) {
			t.Fatalf("round trip changed the metadata:\n in  %v\n out %v", want, out.Metadata)
		}
	})
}
