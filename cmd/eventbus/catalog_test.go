package main_test

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/photo"
)

// asyncAPISchema is the official JSON Schema of AsyncAPI 3.0.0, from the
// npm package @asyncapi/specs 6.11.1 (schemas/3.0.0-without-$id.json,
// Apache License 2.0: testdata/asyncapi-specs.LICENSE).
const asyncAPISchema = "testdata/asyncapi-3.0.0.schema.json"

func compileAsyncAPISchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(asyncAPISchema)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("asyncapi-3.0.0.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("asyncapi-3.0.0.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// `eventbus catalog` on a registry holding the photo service's schemas
// (one of them at version 2) prints an AsyncAPI 3.0 document that the
// official AsyncAPI 3.0.0 JSON Schema accepts: one channel per type on the
// type's stream, whose message has the latest schema as payload.
func TestCatalog(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	ctx := t.Context()
	b := newBus(t, c, prefix)
	if err := photo.RegisterSchemas(ctx, b); err != nil {
		t.Fatal(err)
	}
	types := make([]string, 0)
	for typ := range photo.Schemas() {
		types = append(types, typ)
	}
	slices.Sort(types)
	if len(types) == 0 {
		t.Fatal("photo ships no schemas")
	}
	// A second version of the first type: the catalogue shows the latest.
	v2 := types[0]
	s2, err := b.Schemas().Put(ctx, v2, []byte(`{"type":"object","properties":{"added":{"type":"string"}}}`), bus.WithForce())
	if err != nil {
		t.Fatal(err)
	}
	if s2.Version != 2 {
		t.Fatalf("%s stored as version %d, want 2", v2, s2.Version)
	}

	out := cli(t, "", with(global, "catalog", "--version", "9.9.9")...).ok(t).stdout
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatalf("catalog output is not JSON: %v\n%s", err, out)
	}
	if err := compileAsyncAPISchema(t).Validate(inst); err != nil {
		t.Fatalf("catalog output is not a valid AsyncAPI 3.0.0 document: %v", err)
	}

	var doc struct {
		AsyncAPI string `json:"asyncapi"`
		Info     struct{ Title, Version string }
		Servers  map[string]struct{ Host, Protocol string }
		Channels map[string]struct {
			Address string
			Servers []struct {
				Ref string `json:"$ref"`
			}
			Messages map[string]struct {
				Ref string `json:"$ref"`
			}
		}
		Components struct {
			Messages map[string]struct {
				Name    string
				Headers map[string]any
				Payload struct {
					SchemaFormat string
					Schema       json.RawMessage
				}
				SchemaVersion int    `json:"x-eventbus-schema-version"`
				DataSchema    string `json:"x-eventbus-dataschema"`
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.AsyncAPI != "3.0.0" || doc.Info.Version != "9.9.9" || !strings.Contains(doc.Info.Title, prefix) {
		t.Errorf("asyncapi %q, info %+v", doc.AsyncAPI, doc.Info)
	}
	if srv := doc.Servers["redis"]; srv.Protocol != "redis" || srv.Host == "" {
		t.Errorf("servers: %+v", doc.Servers)
	}
	var got []string
	for typ := range doc.Channels {
		got = append(got, typ)
	}
	slices.Sort(got)
	if !slices.Equal(got, types) {
		t.Fatalf("channels %q, want the registered types %q", got, types)
	}
	for _, typ := range types {
		ch := doc.Channels[typ]
		if ch.Address != prefix+typ {
			t.Errorf("%s: address %q, want the stream %q", typ, ch.Address, prefix+typ)
		}
		if len(ch.Servers) != 1 || ch.Servers[0].Ref != "#/servers/redis" {
			t.Errorf("%s: servers %+v", typ, ch.Servers)
		}
		ref := ch.Messages[typ].Ref
		id, ok := strings.CutPrefix(ref, "#/components/messages/")
		msg, found := doc.Components.Messages[id]
		if !ok || !found {
			t.Errorf("%s: message $ref %q does not resolve", typ, ref)
			continue
		}
		latest, err := b.Schemas().Get(ctx, typ, 0)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Name != typ || msg.SchemaVersion != latest.Version || msg.DataSchema != latest.URI || id != typ+".v"+strconv.Itoa(latest.Version) {
			t.Errorf("%s: message %q name %q version %d dataschema %q, want version %d %s", typ, id, msg.Name, msg.SchemaVersion, msg.DataSchema, latest.Version, latest.URI)
		}
		if !jsonEqual(t, msg.Payload.Schema, latest.Document) {
			t.Errorf("%s: payload schema %s, want the registry's latest %s", typ, msg.Payload.Schema, latest.Document)
		}
		if msg.Payload.SchemaFormat != "application/schema+json;version=2020-12" {
			t.Errorf("%s: schemaFormat %q", typ, msg.Payload.SchemaFormat)
		}
		props, _ := msg.Headers["properties"].(map[string]any)
		for _, attr := range []string{"id", "type", "source", "specversion", "time", "dataschema", "room", "user", "broadcast"} {
			if _, ok := props[attr]; !ok {
				t.Errorf("%s: headers lack the CloudEvents attribute %q", typ, attr)
			}
		}
		if tp, _ := props["type"].(map[string]any); tp["const"] != typ {
			t.Errorf("%s: headers.type %v, want const %q", typ, props["type"], typ)
		}
	}
	if doc.Channels[v2].Messages[v2].Ref != "#/components/messages/"+v2+".v2" {
		t.Errorf("%s: message %q, want its version 2", v2, doc.Channels[v2].Messages[v2].Ref)
	}

	// --format yaml: the same document.
	y := cli(t, "", with(global, "catalog", "--version", "9.9.9", "--format", "yaml")...).ok(t).stdout
	var fromYAML any
	if err := yaml.Unmarshal([]byte(y), &fromYAML); err != nil {
		t.Fatalf("--format yaml: %v\n%s", err, y)
	}
	yj, _ := json.Marshal(fromYAML)
	if !jsonEqual(t, yj, []byte(out)) {
		t.Errorf("--format yaml is not the JSON document:\n%s", y)
	}
	if strings.HasPrefix(strings.TrimSpace(y), "{") {
		t.Errorf("--format yaml printed flow style:\n%.300s", y)
	}

	cli(t, "", with(global, "catalog", "--format", "xml")...).failsWith(t, 2, "--format", "json or yaml")
}

// An empty registry is an empty catalogue, still a valid document.
func TestCatalogEmpty(t *testing.T) {
	t.Parallel()
	_, _, global := setup(t)
	out := cli(t, "", with(global, "catalog")...).ok(t).stdout
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if err := compileAsyncAPISchema(t).Validate(inst); err != nil {
		t.Fatalf("not a valid AsyncAPI 3.0.0 document: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"channels": {}`) {
		t.Errorf("channels not empty:\n%s", out)
	}
	// The schema does check: without info, or with a channel whose
	// address is a number, the document is refused.
	for _, bad := range []string{
		strings.Replace(out, `"info"`, `"inf"`, 1),
		strings.Replace(out, `"channels": {}`, `"channels": {"x": {"address": 7}}`, 1),
	} {
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		if compileAsyncAPISchema(t).Validate(inst) == nil {
			t.Errorf("the AsyncAPI schema accepted a broken document:\n%s", bad)
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return reflect.DeepEqual(x, y)
}
