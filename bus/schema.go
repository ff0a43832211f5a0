package bus

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	xmessage "golang.org/x/text/message"
)

// Schema errors. Each wraps one of these; match with errors.Is.
var (
	// ErrInvalidSchema is returned for a schema document that is not JSON or
	// does not compile as a JSON Schema (draft 2020-12 unless it says
	// otherwise in $schema). The message names the JSON pointer of the
	// offending keyword.
	ErrInvalidSchema = errors.New("invalid JSON Schema")
	// ErrSchemaViolation is returned when event data does not match the
	// schema of its type. It comes wrapped together with ErrInvalidData, so
	// code that maps ErrInvalidData to "bad request" treats it alike.
	ErrSchemaViolation = errors.New("data does not match its schema")
	// ErrIncompatibleSchema is returned by SchemaRegistry.Put and Check when
	// the new version rejects events of its type still retained in the
	// stream; the error is an *IncompatibleSchemaError naming them.
	ErrIncompatibleSchema = errors.New("schema rejects retained events")
	// ErrUnknownSchema is returned for a dataschema that names a version the
	// registry does not hold, and by Get for a type or version not stored.
	ErrUnknownSchema = errors.New("unknown schema version")
)

// schemaURIPrefix starts the dataschema attribute of every event the
// publisher validated: "urn:eventbus:schema:<type>:<version>".
const schemaURIPrefix = "urn:eventbus:schema:"

// SchemaURI is the dataschema attribute of an event of type eventType
// validated against version: "urn:eventbus:schema:photo.uploaded:3".
func SchemaURI(eventType string, version int) string {
	return schemaURIPrefix + eventType + ":" + strconv.Itoa(version)
}

// ParseSchemaURI returns the type and version named by a dataschema written
// by the bus; ok is false for any other value (a URL a non-Go producer set).
func ParseSchemaURI(s string) (eventType string, version int, ok bool) {
	rest, found := strings.CutPrefix(s, schemaURIPrefix)
	if !found {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return "", 0, false
	}
	v, err := strconv.Atoi(rest[i+1:])
	if err != nil || v < 1 || ValidateType(rest[:i]) != nil {
		return "", 0, false
	}
	return rest[:i], v, true
}

// SchemaKey is the hash that holds the schema versions of type t (field:
// version number from 1, value: the schema as compact JSON). Versions are
// never changed or removed.
func (c Config) SchemaKey(t string) string { return c.StreamPrefix + "$schema:" + t }

// SchemasKey is the set of every type with a schema; the same name is the
// Pub/Sub channel on which a new version of a type is announced (the
// message is the type).
func (c Config) SchemasKey() string { return c.StreamPrefix + "$schemas" }

// Schema is one stored version of a type's JSON Schema.
type Schema struct {
	Type    string `json:"type"`
	Version int    `json:"version"`
	// URI is the dataschema attribute of events validated against it.
	URI string `json:"uri"`
	// Document is the schema as stored (compact JSON).
	Document json.RawMessage `json:"schema"`
}

// IncompatibleSchemaError is the error of a Put or Check whose schema rejects
// retained events of its type. It wraps ErrIncompatibleSchema.
type IncompatibleSchemaError struct {
	Type string
	// IDs are the stream ids of the first rejected entries (at most
	// MaxReportedIDs), oldest first.
	IDs []string
	// Rejected counts every rejected entry; Checked every entry validated.
	Rejected, Checked int
	// Reason is why the first of them was rejected.
	Reason string
}

// MaxReportedIDs bounds IncompatibleSchemaError.IDs.
const MaxReportedIDs = 10

func (e *IncompatibleSchemaError) Error() string {
	return fmt.Sprintf("%v: the new schema for %s rejects %d of the %d retained events, first %s (%s); fix the schema, or force the put if those events may stay as they are",
		ErrIncompatibleSchema, e.Type, e.Rejected, e.Checked, strings.Join(e.IDs, ", "), e.Reason)
}

func (e *IncompatibleSchemaError) Unwrap() error { return ErrIncompatibleSchema }

//go:embed lua/schema_put.lua
var schemaPutLua string

var schemaPutScript = redis.NewScript(schemaPutLua)

// compiledSchema is one version, compiled.
type compiledSchema struct {
	version int
	uri     string
	sch     *jsonschema.Schema
}

// compileSchema parses and compiles doc as the schema of eventType; it
// returns the compact document too.
func compileSchema(eventType string, doc []byte) (*jsonschema.Schema, []byte, error) {
	var compact bytes.Buffer
	if err := json.Compact(&compact, doc); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, nil, fmt.Errorf("%w: schema for %s is not JSON: %v at byte offset %d", ErrInvalidSchema, eventType, se, se.Offset)
		}
		return nil, nil, fmt.Errorf("%w: schema for %s is not JSON: %v", ErrInvalidSchema, eventType, err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(compact.Bytes()))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: schema for %s is not JSON: %v", ErrInvalidSchema, eventType, err)
	}
	if _, ok := v.(map[string]any); !ok {
		if _, isBool := v.(bool); !isBool {
			return nil, nil, fmt.Errorf("%w: schema for %s at \"\": a schema is a JSON object (or true/false)", ErrInvalidSchema, eventType)
		}
	}
	url := "eventbus:///" + eventType + ".json"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(url, v); err != nil {
		return nil, nil, fmt.Errorf("%w: schema for %s: %v", ErrInvalidSchema, eventType, err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		var sve *jsonschema.SchemaValidationError
		var ve *jsonschema.ValidationError
		if errors.As(err, &sve) && errors.As(sve.Err, &ve) {
			return nil, nil, fmt.Errorf("%w: schema for %s %s", ErrInvalidSchema, eventType, leafErrors(ve))
		}
		return nil, nil, fmt.Errorf("%w: schema for %s does not compile: %v", ErrInvalidSchema, eventType, err)
	}
	return sch, compact.Bytes(), nil
}

var printer = xmessage.NewPrinter(language.English)

// leafErrors formats the innermost causes of ve on one line, each with the
// JSON pointer it is about: `at "/properties/a/minLength": got string, want integer`.
func leafErrors(ve *jsonschema.ValidationError) string {
	var out []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			out = append(out, fmt.Sprintf("at %q: %s", pointer(e.InstanceLocation), e.ErrorKind.LocalizedString(printer)))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return strings.Join(out, "; ")
}

func pointer(tokens []string) string {
	if len(tokens) == 0 {
		return ""
	}
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// validate checks data against s. The error wraps ErrInvalidData and
// ErrSchemaViolation and names the JSON pointers where data is wrong.
func (s *compiledSchema) validate(eventType string, data []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: %w: %s data is not JSON: %v", ErrInvalidData, ErrSchemaViolation, eventType, err)
	}
	if err := s.sch.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		detail := err.Error()
		if errors.As(err, &ve) {
			detail = leafErrors(ve)
		}
		return fmt.Errorf("%w: %w: %s data does not match schema %s: %s", ErrInvalidData, ErrSchemaViolation, eventType, s.uri, detail)
	}
	return nil
}

// PutOption changes how SchemaRegistry.Put works.
type PutOption func(*putOptions)

type putOptions struct{ force bool }

// WithForce stores the new version even if it rejects retained events.
func WithForce() PutOption { return func(o *putOptions) { o.force = true } }

// Put stores schema as the next version of eventType's JSON Schema and
// returns it. A schema equal to the latest version (compared as compact
// JSON) stores nothing and returns the latest, so a service may register its
// schemas at every start. Before storing, Put validates every event of the
// type still retained in its stream against the new schema and refuses with
// an *IncompatibleSchemaError naming the first rejected entries, unless
// WithForce is given. Every Bus on the prefix uses the new version within
// Config.SchemaResyncInterval (at once, when the announcement arrives).
//
// A schema that is not JSON or does not compile gives ErrInvalidSchema with
// the JSON pointer of the problem; a bad type gives ErrInvalidType as
// Publish does.
func (r *SchemaRegistry) Put(ctx context.Context, eventType string, schema []byte, opts ...PutOption) (Schema, error) {
	var o putOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := ValidateType(eventType); err != nil {
		return Schema{}, err
	}
	sch, compact, err := compileSchema(eventType, schema)
	if err != nil {
		return Schema{}, err
	}
	latest, err := r.Get(ctx, eventType, 0)
	switch {
	case err == nil && bytes.Equal(latest.Document, compact):
		return latest, nil
	case err != nil && !errors.Is(err, ErrUnknownSchema):
		return Schema{}, err
	}
	if !o.force {
		if err := r.check(ctx, eventType, &compiledSchema{uri: "(new)", sch: sch}); err != nil {
			return Schema{}, err
		}
	}
	key := r.cfg.SchemaKey(eventType)
	n, err := schemaPutScript.Run(ctx, r.client, []string{key}, string(compact)).Int()
	if err != nil {
		return Schema{}, fmt.Errorf("store schema for %s in %s: %w", eventType, key, err)
	}
	if n < 0 { // stored by someone else meanwhile
		return Schema{Type: eventType, Version: -n, URI: SchemaURI(eventType, -n), Document: compact}, nil
	}
	if err := r.client.SAdd(ctx, r.cfg.SchemasKey(), eventType).Err(); err != nil {
		return Schema{}, fmt.Errorf("record schema type %s: %w", eventType, err)
	}
	if err := r.client.Publish(ctx, r.cfg.SchemasKey(), eventType).Err(); err != nil {
		// The periodic resync still brings it to every bus.
		r.logger.Error("Announce new schema version", err, map[string]any{"type": eventType, "version": n})
	}
	r.cache.forget(eventType)
	return Schema{Type: eventType, Version: n, URI: SchemaURI(eventType, n), Document: compact}, nil
}

// Check compiles schema and validates every retained event of eventType
// against it, as Put does before storing, without storing anything.
func (r *SchemaRegistry) Check(ctx context.Context, eventType string, schema []byte) error {
	if err := ValidateType(eventType); err != nil {
		return err
	}
	sch, _, err := compileSchema(eventType, schema)
	if err != nil {
		return err
	}
	return r.check(ctx, eventType, &compiledSchema{uri: "(new)", sch: sch})
}

// checkPage is how many entries one XRANGE of the compatibility check reads.
const checkPage = 500

// check validates the data of every retained entry of eventType's stream
// against s. Entries whose data is not JSON are skipped: no schema can
// accept them, and a consumer dead-letters them anyway.
func (r *SchemaRegistry) check(ctx context.Context, eventType string, s *compiledSchema) error {
	key := r.cfg.StreamKey(eventType)
	ie := &IncompatibleSchemaError{Type: eventType}
	start := "-"
	for {
		entries, err := r.client.XRangeN(ctx, key, start, "+", checkPage).Result()
		if err != nil {
			return fmt.Errorf("read retained events of %s from %s: %w", eventType, key, err)
		}
		for _, e := range entries {
			data, _ := e.Values[FieldData].(string)
			if ct, _ := e.Values[AttrDataContentType].(string); ct != "" && !IsJSONContentType(ct) {
				continue
			}
			if !json.Valid([]byte(data)) {
				continue
			}
			ie.Checked++
			if err := s.validate(eventType, []byte(data)); err != nil {
				ie.Rejected++
				if len(ie.IDs) < MaxReportedIDs {
					ie.IDs = append(ie.IDs, e.ID)
				}
				if ie.Reason == "" {
					ie.Reason = strings.TrimPrefix(err.Error(), ErrInvalidData.Error()+": "+ErrSchemaViolation.Error()+": ")
				}
			}
		}
		if len(entries) < checkPage {
			break
		}
		start = "(" + entries[len(entries)-1].ID
	}
	if ie.Rejected > 0 {
		return ie
	}
	return nil
}

// Get returns version of eventType's schema; version 0 means the latest.
// A type without schemas, or a version not stored, gives ErrUnknownSchema.
func (r *SchemaRegistry) Get(ctx context.Context, eventType string, version int) (Schema, error) {
	if err := ValidateType(eventType); err != nil {
		return Schema{}, err
	}
	if version < 0 {
		return Schema{}, fmt.Errorf("%w: version %d: versions count from 1 (0 means the latest)", ErrUnknownSchema, version)
	}
	key := r.cfg.SchemaKey(eventType)
	if version == 0 {
		n, err := r.client.HLen(ctx, key).Result()
		if err != nil {
			return Schema{}, fmt.Errorf("read schemas of %s from %s: %w", eventType, key, err)
		}
		if n == 0 {
			return Schema{}, fmt.Errorf("%w: no schema is registered for %s", ErrUnknownSchema, eventType)
		}
		version = int(n)
	}
	doc, err := r.client.HGet(ctx, key, strconv.Itoa(version)).Result()
	if errors.Is(err, redis.Nil) {
		return Schema{}, fmt.Errorf("%w: %s has no schema version %d", ErrUnknownSchema, eventType, version)
	}
	if err != nil {
		return Schema{}, fmt.Errorf("read schema %s version %d from %s: %w", eventType, version, key, err)
	}
	return Schema{Type: eventType, Version: version, URI: SchemaURI(eventType, version), Document: json.RawMessage(doc)}, nil
}

// List returns the latest version of every type with a schema, by type.
func (r *SchemaRegistry) List(ctx context.Context) ([]Schema, error) {
	types, err := r.client.SMembers(ctx, r.cfg.SchemasKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("read schema types from %s: %w", r.cfg.SchemasKey(), err)
	}
	slices.Sort(types)
	out := make([]Schema, 0, len(types))
	for _, t := range types {
		if ValidateType(t) != nil {
			continue
		}
		s, err := r.Get(ctx, t, 0)
		if errors.Is(err, ErrUnknownSchema) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Register puts every schema of schemas (event type -> document), in type
// order, as Put does without WithForce: what is already the latest version
// is left as it is. It is how a service registers the schemas it ships
// (photo.RegisterSchemas) at start.
func (r *SchemaRegistry) Register(ctx context.Context, schemas map[string][]byte) error {
	types := make([]string, 0, len(schemas))
	for t := range schemas {
		types = append(types, t)
	}
	slices.Sort(types)
	for _, t := range types {
		if _, err := r.Put(ctx, t, schemas[t]); err != nil {
			return err
		}
	}
	return nil
}
