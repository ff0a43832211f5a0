package photo

import (
	"context"
	"embed"
	"fmt"
	"strings"

	"github.com/shared-infra/eventbus/bus"
)

// schemaFS holds one JSON Schema (draft 2020-12) per event type, in a file
// named after the type: schemas/photo.uploaded.json and so on.
//
//go:embed schemas/*.json
var schemaFS embed.FS

// Schemas returns the JSON Schema (draft 2020-12) of every event type in this
// package, keyed by event type (TypeUploaded, ...). Each call returns fresh
// copies, so the caller may modify them.
//
// The schemas list the required fields and their types and ranges; they do not
// forbid additional properties, so a producer can add a field without breaking
// consumers that validate against an older schema.
func Schemas() map[string][]byte {
	entries, err := schemaFS.ReadDir("schemas")
	if err != nil {
		panic("photo: embedded schemas missing: " + err.Error())
	}
	m := make(map[string][]byte, len(entries))
	for _, e := range entries {
		b, err := schemaFS.ReadFile("schemas/" + e.Name())
		if err != nil {
			panic("photo: embedded schema unreadable: " + err.Error())
		}
		m[strings.TrimSuffix(e.Name(), ".json")] = b
	}
	return m
}

// RegisterSchemas stores the schema of every photo event type in b's schema
// registry (bus.SchemaRegistry.Register), so that every publisher on the
// bus's prefix refuses invalid photo events and every router rejects
// (dead-letters) invalid ones it receives. Call it at start: a schema that is
// already the latest version is left as it is, and a changed one becomes a
// new version only if it accepts the photo events still retained in the
// streams.
func RegisterSchemas(ctx context.Context, b *bus.Bus) error {
	if err := b.Schemas().Register(ctx, Schemas()); err != nil {
		return fmt.Errorf("photo: register schemas: %w", err)
	}
	return nil
}
