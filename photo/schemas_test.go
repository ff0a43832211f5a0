package photo_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/shared-infra/eventbus/photo"
)

var allTypes = []string{
	photo.TypeUploaded,
	photo.TypeProcessingStarted,
	photo.TypeProcessingProgress,
	photo.TypeProcessingCompleted,
	photo.TypeProcessingFailed,
	photo.TypeDeleted,
	photo.TypeNotification,
}

// compileSchemas compiles every schema returned by photo.Schemas.
func compileSchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	out := make(map[string]*jsonschema.Schema)
	for typ, raw := range photo.Schemas() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("schema %s is not JSON: %v", typ, err)
		}
		if got := doc.(map[string]any)["$schema"]; got != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("schema %s: $schema = %v, want draft 2020-12", typ, got)
		}
		url := "mem:///" + typ + ".json"
		if err := c.AddResource(url, doc); err != nil {
			t.Fatalf("schema %s: add: %v", typ, err)
		}
		sch, err := c.Compile(url)
		if err != nil {
			t.Fatalf("schema %s does not compile: %v", typ, err)
		}
		out[typ] = sch
	}
	return out
}

func validate(t *testing.T, sch *jsonschema.Schema, payload string) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(payload)))
	if err != nil {
		t.Fatalf("test payload is not JSON: %v\n%s", err, payload)
	}
	return sch.Validate(v)
}

func TestSchemasCoverEveryType(t *testing.T) {
	got := slices.Sorted(maps.Keys(photo.Schemas()))
	want := slices.Sorted(slices.Values(allTypes))
	if !slices.Equal(got, want) {
		t.Fatalf("Schemas() types = %v, want %v", got, want)
	}
}

func TestSchemasReturnsCopies(t *testing.T) {
	a := photo.Schemas()
	a[photo.TypeUploaded][0] = 'X'
	if b := photo.Schemas(); b[photo.TypeUploaded][0] != '{' {
		t.Fatal("modifying the result of Schemas changed a later result")
	}
}

func TestSchemasValidate(t *testing.T) {
	schemas := compileSchemas(t)
	const thumbs = `[{"size":"small","key":"t/1/small.jpg","width":160,"height":90}]`
	tests := []struct {
		typ  string
		good []string
		bad  map[string]string // reason -> payload
	}{
		{
			typ: photo.TypeUploaded,
			good: []string{
				`{"photoId":"p1","ownerId":"u1","key":"originals/p1","filename":"cat.jpg","contentType":"image/jpeg","size":1234}`,
				`{"photoId":"p1","ownerId":"u1","key":"originals/p1","filename":"","contentType":"","size":0,"extra":true}`,
			},
			bad: map[string]string{
				"empty photoId":    `{"photoId":"","ownerId":"u1","key":"k","filename":"a","contentType":"b","size":1}`,
				"missing key":      `{"photoId":"p1","ownerId":"u1","filename":"a","contentType":"b","size":1}`,
				"negative size":    `{"photoId":"p1","ownerId":"u1","key":"k","filename":"a","contentType":"b","size":-1}`,
				"size as string":   `{"photoId":"p1","ownerId":"u1","key":"k","filename":"a","contentType":"b","size":"1"}`,
				"fractional size":  `{"photoId":"p1","ownerId":"u1","key":"k","filename":"a","contentType":"b","size":1.5}`,
				"not an object":    `["p1"]`,
				"photoId a number": `{"photoId":1,"ownerId":"u1","key":"k","filename":"a","contentType":"b","size":1}`,
			},
		},
		{
			typ:  photo.TypeProcessingStarted,
			good: []string{`{"photoId":"p1","ownerId":"u1"}`},
			bad: map[string]string{
				"missing ownerId": `{"photoId":"p1"}`,
				"empty ownerId":   `{"photoId":"p1","ownerId":""}`,
			},
		},
		{
			typ: photo.TypeProcessingProgress,
			good: []string{
				`{"photoId":"p1","ownerId":"u1","percent":0,"stage":"decoding"}`,
				`{"photoId":"p1","ownerId":"u1","percent":100,"stage":""}`,
			},
			bad: map[string]string{
				"percent over 100": `{"photoId":"p1","ownerId":"u1","percent":101,"stage":"x"}`,
				"negative percent": `{"photoId":"p1","ownerId":"u1","percent":-1,"stage":"x"}`,
				"missing stage":    `{"photoId":"p1","ownerId":"u1","percent":5}`,
			},
		},
		{
			typ: photo.TypeProcessingCompleted,
			good: []string{
				`{"photoId":"p1","ownerId":"u1","width":1600,"height":900,"format":"jpeg","thumbnails":` + thumbs + `,"durationMs":42}`,
				`{"photoId":"p1","ownerId":"u1","width":1,"height":1,"format":"gif","durationMs":0}`,
			},
			bad: map[string]string{
				"unknown format":        `{"photoId":"p1","ownerId":"u1","width":1,"height":1,"format":"webp","durationMs":0}`,
				"zero width":            `{"photoId":"p1","ownerId":"u1","width":0,"height":1,"format":"png","durationMs":0}`,
				"thumbnails null":       `{"photoId":"p1","ownerId":"u1","width":1,"height":1,"format":"png","thumbnails":null,"durationMs":0}`,
				"thumbnail without key": `{"photoId":"p1","ownerId":"u1","width":1,"height":1,"format":"png","thumbnails":[{"size":"small","width":1,"height":1}],"durationMs":0}`,
				"negative duration":     `{"photoId":"p1","ownerId":"u1","width":1,"height":1,"format":"png","durationMs":-5}`,
			},
		},
		{
			typ:  photo.TypeProcessingFailed,
			good: []string{`{"photoId":"p1","ownerId":"u1","reason":"corrupt image: the JPEG data is truncated or damaged","code":"corrupt"}`},
			bad: map[string]string{
				"unknown code": `{"photoId":"p1","ownerId":"u1","reason":"x","code":"oops"}`,
				"empty reason": `{"photoId":"p1","ownerId":"u1","reason":"","code":"internal"}`,
				"missing code": `{"photoId":"p1","ownerId":"u1","reason":"x"}`,
			},
		},
		{
			typ:  photo.TypeDeleted,
			good: []string{`{"photoId":"p1","ownerId":"u1"}`},
			bad: map[string]string{
				"missing photoId": `{"ownerId":"u1"}`,
				"null photoId":    `{"photoId":null,"ownerId":"u1"}`,
			},
		},
		{
			typ: photo.TypeNotification,
			good: []string{
				`{"photoId":"p1","status":"completed","message":"Your photo is ready.","thumbnails":` + thumbs + `}`,
				`{"photoId":"p1","status":"failed","message":"unsupported format: the file is not a JPEG, PNG or GIF image"}`,
			},
			bad: map[string]string{
				"unknown status":  `{"photoId":"p1","status":"done","message":"x"}`,
				"empty message":   `{"photoId":"p1","status":"failed","message":""}`,
				"bad thumbnails":  `{"photoId":"p1","status":"completed","message":"x","thumbnails":[{"size":"small","key":"k","width":"160","height":90}]}`,
				"missing message": `{"photoId":"p1","status":"failed"}`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			sch := schemas[tt.typ]
			if sch == nil {
				t.Fatalf("no schema for %s", tt.typ)
			}
			for _, p := range tt.good {
				if err := validate(t, sch, p); err != nil {
					t.Errorf("valid payload rejected: %v\n%s", err, p)
				}
			}
			for reason, p := range tt.bad {
				if err := validate(t, sch, p); err == nil {
					t.Errorf("invalid payload (%s) accepted:\n%s", reason, p)
				}
			}
		})
	}
}

// TestPayloadStructsMatchSchemas checks that the Go structs marshal to JSON the
// schemas accept, so the json tags and the schemas cannot drift apart.
func TestPayloadStructsMatchSchemas(t *testing.T) {
	schemas := compileSchemas(t)
	thumbs := []photo.Thumbnail{{Size: "small", Key: "t/p1/small.jpg", Width: 160, Height: 90}}
	payloads := map[string][]any{
		photo.TypeUploaded:           {photo.Uploaded{PhotoID: "p1", OwnerID: "u1", Key: "originals/p1", Filename: "a.jpg", ContentType: "image/jpeg", Size: 10}},
		photo.TypeProcessingStarted:  {photo.ProcessingStarted{PhotoID: "p1", OwnerID: "u1"}},
		photo.TypeProcessingProgress: {photo.ProcessingProgress{PhotoID: "p1", OwnerID: "u1", Percent: 50, Stage: "thumbnail:small"}},
		photo.TypeProcessingCompleted: {
			photo.ProcessingCompleted{PhotoID: "p1", OwnerID: "u1", Width: 1600, Height: 900, Format: photo.FormatJPEG, Thumbnails: thumbs, DurationMs: 12},
			photo.ProcessingCompleted{PhotoID: "p1", OwnerID: "u1", Width: 1, Height: 1, Format: photo.FormatPNG}, // nil Thumbnails
		},
		photo.TypeProcessingFailed: {photo.ProcessingFailed{PhotoID: "p1", OwnerID: "u1", Reason: "too large", Code: photo.CodeTooLarge}},
		photo.TypeDeleted:          {photo.Deleted{PhotoID: "p1", OwnerID: "u1"}},
		photo.TypeNotification: {
			photo.Notification{PhotoID: "p1", Status: photo.StatusCompleted, Message: "ready", Thumbnails: thumbs},
			photo.Notification{PhotoID: "p1", Status: photo.StatusFailed, Message: "corrupt image"},
		},
	}
	for _, typ := range allTypes {
		if len(payloads[typ]) == 0 {
			t.Errorf("no payload struct tested for %s", typ)
		}
		for _, p := range payloads[typ] {
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate(t, schemas[typ], string(b)); err != nil {
				t.Errorf("%s: marshaled %T rejected: %v\n%s", typ, p, err, b)
			}
		}
	}
	// Zero values must be rejected: the schemas require non-empty ids.
	b, _ := json.Marshal(photo.Deleted{})
	if err := validate(t, schemas[photo.TypeDeleted], string(b)); err == nil {
		t.Errorf("zero Deleted accepted: %s", b)
	}
}

func TestPayloadJSONFieldNames(t *testing.T) {
	b, err := json.Marshal(photo.ProcessingCompleted{PhotoID: "p", OwnerID: "o", Width: 2, Height: 3, Format: "png", DurationMs: 4,
		Thumbnails: []photo.Thumbnail{{Size: "small", Key: "k", Width: 1, Height: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"photoId":"p","ownerId":"o","width":2,"height":3,"format":"png","thumbnails":[{"size":"small","key":"k","width":1,"height":1}],"durationMs":4}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}
