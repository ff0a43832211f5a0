package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/shared-infra/eventbus/bus"
)

func newCatalogCmd(g *globals) *cobra.Command {
	var format, title, version string
	cmd := &cobra.Command{
		Use:   "catalog",
		Short: "Print an AsyncAPI 3.0 document of the event types in the schema registry",
		Long: `Print the event catalogue of the bus: an AsyncAPI 3.0 document built from the
schema registry (eventbus schema list), one channel per event type with a
schema. A channel's address is the type's Redis stream (<prefix><type>, see
docs/wire-format.md); its message is named after the type, carries the
latest schema version as payload (with x-eventbus-schema-version and
x-eventbus-dataschema, the dataschema URI events carry) and the CloudEvents
attributes as headers (the entry's other fields). The payload is a
Multi Format Schema Object: the registry's schemas are JSON Schema
2020-12, unless a schema says otherwise in its $schema.

The document goes to stdout, as JSON (the default) or YAML (--format yaml).
Types without a schema are not listed.`,
		Example: `  eventbus catalog > asyncapi.json
  eventbus catalog --format yaml --title "Photo service events" --version 2.1.0`,
		Args: usageArgs(cobra.NoArgs),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if format != "json" && format != "yaml" {
				return usagef("invalid --format %q: use json or yaml", format)
			}
			ctx := cmd.Context()
			b, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			list, err := b.Schemas().List(ctx)
			if err != nil {
				return g.redisError("list schemas", err)
			}
			if version == "" {
				version = readBuildVersion().Version
			}
			doc := asyncAPICatalog(b.Config(), redisHost(g.redisURL()), title, version, list)
			out, err := json.MarshalIndent(doc, "", "  ")
			if err != nil {
				return &failure{err: fmt.Errorf("encode the catalogue: %w", err)}
			}
			if format == "yaml" {
				if out, err = jsonToYAML(out); err != nil {
					return &failure{err: fmt.Errorf("encode the catalogue as YAML: %w", err)}
				}
			} else {
				out = append(out, '\n')
			}
			_, err = g.io.out.Write(out)
			return err
		}),
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "json", "json or yaml")
	f.StringVar(&title, "title", "", "the document's info.title (default \"eventbus events (prefix <prefix>)\")")
	f.StringVar(&version, "version", "", "the document's info.version (default this binary's version)")
	return cmd
}

// The AsyncAPI 3.0 objects the catalogue uses, in the specification's field
// order (encoding/json keeps struct order, and sorts map keys).
type (
	asyncAPIDoc struct {
		AsyncAPI           string                     `json:"asyncapi"`
		Info               asyncAPIInfo               `json:"info"`
		Servers            map[string]asyncAPIServer  `json:"servers"`
		DefaultContentType string                     `json:"defaultContentType"`
		Channels           map[string]asyncAPIChannel `json:"channels"`
		Components         asyncAPIComponents         `json:"components"`
	}
	asyncAPIInfo struct {
		Title       string `json:"title"`
		Version     string `json:"version"`
		Description string `json:"description"`
	}
	asyncAPIServer struct {
		Host        string `json:"host"`
		Protocol    string `json:"protocol"`
		Description string `json:"description"`
	}
	asyncAPIChannel struct {
		Address     string                 `json:"address"`
		Title       string                 `json:"title"`
		Description string                 `json:"description"`
		Servers     []asyncAPIRef          `json:"servers"`
		Messages    map[string]asyncAPIRef `json:"messages"`
	}
	asyncAPIRef struct {
		Ref string `json:"$ref"`
	}
	asyncAPIComponents struct {
		Messages map[string]asyncAPIMessage `json:"messages"`
	}
	asyncAPIMessage struct {
		Name          string              `json:"name"`
		Title         string              `json:"title"`
		Summary       string              `json:"summary"`
		ContentType   string              `json:"contentType"`
		Headers       map[string]any      `json:"headers"`
		Payload       asyncAPIMultiFormat `json:"payload"`
		SchemaVersion int                 `json:"x-eventbus-schema-version"`
		DataSchema    string              `json:"x-eventbus-dataschema"`
	}
	asyncAPIMultiFormat struct {
		SchemaFormat string          `json:"schemaFormat"`
		Schema       json.RawMessage `json:"schema"`
	}
)

// catalogServer is the id of the one server (the bus's Redis).
const catalogServer = "redis"

// asyncAPICatalog builds the document of the schemas (the latest version of
// each type, as SchemaRegistry.List returns them).
func asyncAPICatalog(cfg bus.Config, host, title, version string, schemas []bus.Schema) asyncAPIDoc {
	if title == "" {
		title = fmt.Sprintf("eventbus events (prefix %s)", cfg.StreamPrefix)
	}
	doc := asyncAPIDoc{
		AsyncAPI: "3.0.0",
		Info: asyncAPIInfo{
			Title:   title,
			Version: version,
			Description: "The event types of the bus with a registered JSON Schema, generated by `eventbus catalog` from the schema registry. " +
				"Each event is one Redis Stream entry on its type's stream: the CloudEvents attributes are fields (the message's headers), the data is the field data (the payload). See docs/wire-format.md.",
		},
		Servers: map[string]asyncAPIServer{catalogServer: {
			Host: host, Protocol: "redis",
			Description: "The bus's Redis: one stream per event type (XADD to publish, consumer groups to consume).",
		}},
		DefaultContentType: "application/json",
		Channels:           map[string]asyncAPIChannel{},
		Components:         asyncAPIComponents{Messages: map[string]asyncAPIMessage{}},
	}
	for _, s := range schemas {
		msgID := fmt.Sprintf("%s.v%d", s.Type, s.Version)
		doc.Channels[s.Type] = asyncAPIChannel{
			Address:     cfg.StreamKey(s.Type),
			Title:       s.Type,
			Description: fmt.Sprintf("The Redis stream of %s events.", s.Type),
			Servers:     []asyncAPIRef{{Ref: "#/servers/" + catalogServer}},
			Messages:    map[string]asyncAPIRef{s.Type: {Ref: "#/components/messages/" + msgID}},
		}
		doc.Components.Messages[msgID] = asyncAPIMessage{
			Name:          s.Type,
			Title:         fmt.Sprintf("%s (schema version %d)", s.Type, s.Version),
			Summary:       fmt.Sprintf("A %s event; its data matches schema version %d (%s).", s.Type, s.Version, s.URI),
			ContentType:   "application/json",
			Headers:       cloudEventHeaders(s),
			Payload:       asyncAPIMultiFormat{SchemaFormat: schemaFormat(s.Document), Schema: s.Document},
			SchemaVersion: s.Version,
			DataSchema:    s.URI,
		}
	}
	return doc
}

// cloudEventHeaders is the schema of an entry's attribute fields
// (docs/wire-format.md, "Fields"): every value is a string.
func cloudEventHeaders(s bus.Schema) map[string]any {
	str := func(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }
	return map[string]any{
		"type":     "object",
		"required": []string{bus.AttrID, bus.AttrType, bus.AttrSource, bus.AttrSpecVersion},
		"properties": map[string]any{
			bus.AttrID:              str("Unique event id (a UUID from the Go publisher)."),
			bus.AttrType:            map[string]any{"type": "string", "const": s.Type},
			bus.AttrSource:          str("The publishing service."),
			bus.AttrSpecVersion:     map[string]any{"type": "string", "const": bus.SpecVersion},
			bus.AttrTime:            map[string]any{"type": "string", "format": "date-time"},
			bus.AttrDataContentType: str("The media type of the data (application/json by default)."),
			bus.AttrDataSchema:      map[string]any{"type": "string", "description": "The schema version the data was validated against; the latest is " + s.URI + "."},
			bus.AttrSubject:         str("What the event is about, e.g. a photo id."),
			bus.AttrRoom:            str("Browser addressing: the room."),
			bus.AttrUser:            str("Browser addressing: the user."),
			bus.AttrBroadcast:       map[string]any{"type": "string", "enum": []string{"true", "false"}},
			bus.AttrTraceParent:     str("W3C trace context."),
			bus.AttrTraceState:      str("W3C trace state."),
			bus.AttrCorrelationID:   str("The id of the chain's first event."),
			bus.AttrCausationID:     str("The id of the event whose handler published this one."),
		},
		"additionalProperties": map[string]any{"type": "string", "description": "Other CloudEvents extension attributes."},
	}
}

// schemaFormat is the Multi Format Schema Object's schemaFormat of a
// registry schema: JSON Schema 2020-12 (the registry's dialect) unless its
// $schema names draft-07.
func schemaFormat(doc json.RawMessage) string {
	var head struct {
		Schema string `json:"$schema"`
	}
	_ = json.Unmarshal(doc, &head)
	if strings.Contains(head.Schema, "draft-07") {
		return "application/schema+json;version=draft-07"
	}
	return "application/schema+json;version=2020-12"
}

// redisHost is the host:port of a Redis URL, without credentials, for the
// document's server ("localhost:6379" when the URL does not parse).
func redisHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "localhost:6379"
	}
	return u.Host
}

// jsonToYAML re-encodes a JSON document as YAML, keeping the key order:
// JSON is YAML, so it is decoded into a yaml.Node tree, whose flow styles
// are cleared so that it encodes in block style.
func jsonToYAML(j []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(j, &n); err != nil {
		return nil, err
	}
	var clear func(*yaml.Node)
	clear = func(n *yaml.Node) {
		n.Style &^= yaml.FlowStyle
		if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
			n.Style &^= yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle
		}
		for _, c := range n.Content {
			clear(c)
		}
	}
	clear(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
