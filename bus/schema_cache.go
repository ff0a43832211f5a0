package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"
)

// DefaultSchemaResyncInterval is the default Config.SchemaResyncInterval.
const DefaultSchemaResyncInterval = 5 * time.Second

// SchemaRegistry is the bus's store of JSON Schemas, one versioned list per
// event type, in Redis under the bus's prefix (Config.SchemaKey). Every Bus
// on the prefix shares it: the publisher validates each event against the
// latest version of its type and names that version in the event's
// dataschema attribute; the router validates each event it receives against
// the version its dataschema names. Safe for concurrent use.
type SchemaRegistry struct {
	cfg    Config
	client redis.UniversalClient
	logger watermill.LoggerAdapter
	cache  *schemaCache
}

func newSchemaRegistry(cfg Config, client redis.UniversalClient, logger watermill.LoggerAdapter) *SchemaRegistry {
	return &SchemaRegistry{cfg: cfg, client: client, logger: logger, cache: &schemaCache{
		cfg: cfg, client: client, logger: logger, types: map[string]*typeSchemas{},
	}}
}

// Schemas returns the bus's schema registry.
func (b *Bus) Schemas() *SchemaRegistry { return b.schemas }

// ValidateData checks data as an event of eventType whose dataschema
// attribute is dataschema: against the version it names when it names one
// of the bus's (ErrUnknownSchema if the registry has no such version), else
// against the latest version of the type, if any. The error wraps
// ErrInvalidData and ErrSchemaViolation, or ErrUnknownSchema.
func (r *SchemaRegistry) ValidateData(ctx context.Context, eventType, dataschema string, data []byte) error {
	if t, v, ok := ParseSchemaURI(dataschema); ok {
		if t != eventType {
			return fmt.Errorf("%w: dataschema %q names type %s, the event is %s", ErrUnknownSchema, dataschema, t, eventType)
		}
		s, err := r.cache.version(ctx, t, v)
		if err != nil {
			return err
		}
		return s.validate(eventType, data)
	}
	s, err := r.cache.latest(ctx, eventType)
	if err != nil || s == nil {
		return err
	}
	return s.validate(eventType, data)
}

// typeSchemas is what a bus knows of one type's schemas.
type typeSchemas struct {
	latest   *compiledSchema // nil: the type has no schema
	checked  time.Time       // when latest was read from Redis
	gen      uint64          // bumped by every announcement of a new version
	versions map[int]*compiledSchema
}

// schemaCache keeps the compiled schemas a bus has used. A type's latest
// version is re-read when it is older than SchemaResyncInterval, or at once
// when a Put anywhere announces a new version on Config.SchemasKey. Versions
// never change, so a compiled version is kept.
type schemaCache struct {
	cfg    Config
	client redis.UniversalClient
	logger watermill.LoggerAdapter

	mu       sync.RWMutex
	types    map[string]*typeSchemas
	ps       *redis.PubSub
	done     chan struct{}
	watching bool
	closed   bool
}

// latest returns the latest version of eventType's schema, nil if none.
func (c *schemaCache) latest(ctx context.Context, eventType string) (*compiledSchema, error) {
	c.mu.RLock()
	var gen uint64
	var cur *compiledSchema
	e := c.types[eventType]
	fresh := e != nil && time.Since(e.checked) < c.cfg.SchemaResyncInterval
	if e != nil {
		gen, cur = e.gen, e.latest
	}
	c.mu.RUnlock()
	if fresh {
		return cur, nil
	}
	c.watch(ctx)
	key := c.cfg.SchemaKey(eventType)
	n, err := c.client.HLen(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("read the schema of %s from %s: %w", eventType, key, err)
	}
	var s *compiledSchema
	if n > 0 {
		if s, err = c.version(ctx, eventType, int(n)); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	e = c.entry(eventType)
	e.latest = s
	if e.gen == gen { // no announcement while reading: s is current
		e.checked = time.Now()
	}
	c.mu.Unlock()
	return s, nil
}

// entry returns the entry of eventType, making it; c.mu must be held.
func (c *schemaCache) entry(eventType string) *typeSchemas {
	e := c.types[eventType]
	if e == nil {
		e = &typeSchemas{versions: map[int]*compiledSchema{}}
		c.types[eventType] = e
	}
	return e
}

// version returns version v of eventType's schema, compiled.
func (c *schemaCache) version(ctx context.Context, eventType string, v int) (*compiledSchema, error) {
	c.mu.RLock()
	var s *compiledSchema
	if e := c.types[eventType]; e != nil {
		s = e.versions[v]
	}
	c.mu.RUnlock()
	if s != nil {
		return s, nil
	}
	key := c.cfg.SchemaKey(eventType)
	doc, err := c.client.HGet(ctx, key, strconv.Itoa(v)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: %s has no schema version %d (dataschema %s)", ErrUnknownSchema, eventType, v, SchemaURI(eventType, v))
	}
	if err != nil {
		return nil, fmt.Errorf("read schema %s version %d from %s: %w", eventType, v, key, err)
	}
	sch, _, err := compileSchema(eventType, []byte(doc))
	if err != nil {
		return nil, fmt.Errorf("stored schema %s version %d: %w", eventType, v, err)
	}
	s = &compiledSchema{version: v, uri: SchemaURI(eventType, v), sch: sch}
	c.mu.Lock()
	c.entry(eventType).versions[v] = s
	c.mu.Unlock()
	return s, nil
}

// forget makes the next use of eventType re-read its latest version.
func (c *schemaCache) forget(eventType string) {
	if ValidateType(eventType) != nil {
		return
	}
	c.mu.Lock()
	e := c.entry(eventType)
	e.checked = time.Time{}
	e.gen++
	c.mu.Unlock()
}

// watch starts, once, the Pub/Sub subscription to new-version
// announcements. If it cannot start, the periodic re-read still bounds how
// late a new version is seen.
func (c *schemaCache) watch(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watching || c.closed {
		return
	}
	c.watching = true
	ps := c.client.Subscribe(context.WithoutCancel(ctx), c.cfg.SchemasKey())
	c.ps = ps
	c.done = make(chan struct{})
	go func(ch <-chan *redis.Message, done chan struct{}) {
		defer close(done)
		for m := range ch {
			c.forget(m.Payload)
		}
	}(ps.Channel(), c.done)
}

func (c *schemaCache) close() {
	c.mu.Lock()
	c.closed = true
	ps, done := c.ps, c.done
	c.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
		<-done
	}
}
