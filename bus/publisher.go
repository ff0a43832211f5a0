package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
)

// Publisher writes events to their streams. It implements message.Publisher:
// the topic is the event type. Publish is safe for concurrent use.
//
// It is the one publish path of the bus: the router's Publisher, the
// gateway's ingress, the CLI and dead-letter redrive all go through it.
// Before writing, it enriches each message (id, type, source, specversion,
// time, datacontenttype; correlationid, causationid and W3C trace context
// from the message's context, with a "publish <type>" span when
// Config.TracerProvider is set) and validates it (type name, size, JSON data,
// known attributes, and the latest JSON Schema of the type in the bus's
// SchemaRegistry, whose version it names in dataschema); if any message of a
// call is invalid, nothing is written. A call with several messages sends
// them in one pipeline (one round trip). The first publish of a type by this
// process also records the type in the registry that wildcard subscriptions
// follow, in the same round trip.
type Publisher struct {
	cfg     Config
	client  redis.UniversalClient
	logger  watermill.LoggerAdapter
	schemas *SchemaRegistry
	tracer  *tracer

	known  sync.Map // event type -> struct{}: types already in the registry
	closed atomic.Bool
	counts publishCounts

	dedupStats dedupStats // dedup.go
}

var _ message.Publisher = (*Publisher)(nil)

func newPublisher(cfg Config, client redis.UniversalClient, logger watermill.LoggerAdapter, schemas *SchemaRegistry) *Publisher {
	return &Publisher{cfg: cfg, client: client, logger: logger, schemas: schemas, tracer: newTracer(cfg.TracerProvider, client)}
}

// Publish validates, enriches and writes msgs as events of type topic. It
// takes its context from the first message (msg.Context()), as Watermill
// publishers do; each message's own context gives its trace and
// correlation (see WithParent). On success every message's metadata holds
// the attributes that were written.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	if len(msgs) == 0 {
		if p.closed.Load() {
			return ErrClosed
		}
		return nil
	}
	var spans []trace.Span
	if ValidateType(topic) == nil && !p.closed.Load() {
		spans = make([]trace.Span, len(msgs))
		for i, msg := range msgs {
			if msg.UUID == "" {
				msg.UUID = watermill.NewUUID()
			}
			if msg.Metadata == nil {
				msg.Metadata = make(message.Metadata)
			}
			spans[i] = p.tracer.enrich(msg.Context(), topic, msg, len(msgs))
		}
	}
	err := p.publish(topic, msgs)
	endSpans(spans, err)
	p.counts.record(topic, len(msgs), err)
	return err
}

func (p *Publisher) publish(topic string, msgs []*message.Message) error {
	if p.closed.Load() {
		return ErrClosed
	}
	if err := ValidateType(topic); err != nil {
		return err
	}
	dues, err := p.splitDelayed(msgs) // delayed delivery: bus/delay.go
	if err != nil {
		return err
	}
	sch, err := p.schemas.cache.latest(msgs[0].Context(), topic)
	if err != nil {
		return fmt.Errorf("%d event(s) of %s not published, nothing written: %w", len(msgs), topic, err)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano) // once per call, not per event
	fields := make([][]any, len(msgs))
	addressed := false
	for i, msg := range msgs {
		f, err := p.prepare(topic, msg, now, sch)
		if err != nil {
			return fmt.Errorf("event %d of %d (id %s) not published, nothing written: %w", i+1, len(msgs), msg.UUID, err)
		}
		fields[i] = f
		addressed = addressed || IsAddressed(msg)
	}
	if dues != nil {
		return p.publishDelayed(topic, msgs, fields, dues)
	}
	return p.write(msgs[0].Context(), topic, msgs, fields, addressed)
}

// write writes prepared events (fields[i] is msgs[i]'s stream fields) to
// the stream of topic, with the push-stream copy of addressed ones and the
// type's registration on its first publish. It is the one place where
// entries are written for Publish.
func (p *Publisher) write(ctx context.Context, topic string, msgs []*message.Message, fields [][]any, addressed bool) error {
	key := p.cfg.StreamKey(topic)
	_, registered := p.known.Load(topic)
	// Entries are written by dedup.go (deduplicated by event id).
	if len(msgs) == 1 && registered && !addressed && !p.durable() {
		return p.writeOne(ctx, key, topic, msgs[0], fields[0])
	}
	pipe := p.client.Pipeline()
	ws := make([]*entryWrite, 0, len(fields))
	for i, f := range fields {
		ws = append(ws, p.newWrite(ctx, key, topic, msgs[i], f, false))
		p.queue(ctx, pipe, ws[len(ws)-1], f)
		if IsAddressed(msgs[i]) {
			// The copy for browser delivery: one stream, so that an SSE
			// event id is one stream id and a reconnect resumes with XRANGE.
			ws = append(ws, p.newWrite(ctx, p.cfg.PushKey(), topic, msgs[i], f, true))
			p.queue(ctx, pipe, ws[len(ws)-1], f)
		}
	}
	if !registered {
		// Record the type after its first entry exists; a wildcard subscriber
		// that learns of it reads the stream from its first entry.
		pipe.SAdd(ctx, p.cfg.RegistryKey(), topic)
		pipe.Publish(ctx, p.cfg.RegistryKey(), topic)
	}
	if err := p.execWrites(ctx, pipe, ws); err != nil { // durability.go: WAIT for replicas
		return fmt.Errorf("publish %d event(s) to %s: %w", len(msgs), key, err)
	}
	if !registered {
		p.known.Store(topic, struct{}{})
	}
	return nil
}

func (p *Publisher) xaddArgs(key string, fields []any) *redis.XAddArgs {
	a := &redis.XAddArgs{Stream: key, Values: fields, Approx: true}
	switch {
	case p.cfg.Retention.MaxAge > 0:
		a.MinID = fmt.Sprintf("%d", time.Now().Add(-p.cfg.Retention.MaxAge).UnixMilli())
	case p.cfg.Retention.MaxLen > 0:
		a.MaxLen = p.cfg.Retention.MaxLen
	}
	return a
}

// prepare enriches msg in place and returns the stream fields to write.
// sch is the type's latest schema (nil: none).
func (p *Publisher) prepare(topic string, msg *message.Message, now string, sch *compiledSchema) ([]any, error) {
	if msg.UUID == "" {
		msg.UUID = watermill.NewUUID()
	}
	md := msg.Metadata
	if md == nil {
		md = make(message.Metadata)
		msg.Metadata = md
	}
	if err := optionError(msg); err != nil { // reserved.go: WithAttribute of a reserved name
		return nil, err
	}
	if t := md.Get(AttrType); t != "" && t != topic {
		return nil, fmt.Errorf("%w: type attribute %q does not match the topic %q it is published to", ErrInvalidAttribute, t, topic)
	}
	if id := md.Get(AttrID); id != "" && id != msg.UUID {
		return nil, fmt.Errorf("%w: id attribute %q differs from the message UUID %q", ErrInvalidAttribute, id, msg.UUID)
	}
	if v := md.Get(AttrSpecVersion); v != "" && v != SpecVersion {
		return nil, fmt.Errorf("%w: specversion %q is not supported, use %q", ErrInvalidAttribute, v, SpecVersion)
	}
	md[AttrID] = msg.UUID
	md[AttrType] = topic
	md[AttrSpecVersion] = SpecVersion
	if md.Get(AttrSource) == "" {
		md[AttrSource] = p.cfg.ServiceName
	}
	if t := md.Get(AttrTime); t == "" {
		md[AttrTime] = now
	} else if _, err := time.Parse(time.RFC3339Nano, t); err != nil {
		return nil, fmt.Errorf("%w: time %q is not RFC 3339", ErrInvalidAttribute, t)
	}
	if md.Get(AttrDataContentType) == "" {
		md[AttrDataContentType] = p.cfg.DefaultContentType
	}
	if err := checkAddressing(md); err != nil {
		return nil, err
	}
	if b := md.Get(AttrBroadcast); b != "" && b != "true" && b != "false" {
		return nil, fmt.Errorf("%w: broadcast %q must be \"true\" or \"false\"", ErrInvalidAttribute, b)
	}
	if len(msg.Payload) > 0 && IsJSONContentType(md[AttrDataContentType]) && !json.Valid(msg.Payload) {
		return nil, fmt.Errorf("%w: data is not valid JSON but datacontenttype is %q", ErrInvalidData, md[AttrDataContentType])
	}
	if err := applySchema(topic, md, msg.Payload, sch); err != nil {
		return nil, err
	}
	size := len(FieldData) + len(msg.Payload)
	fields := make([]any, 0, 2*len(md)+2)
	for k, v := range md {
		if strings.HasPrefix(k, internalPrefix) {
			continue
		}
		if k == FieldData || k == redisUUIDKey {
			return nil, fmt.Errorf("%w: metadata key %q is reserved", ErrInvalidAttribute, k)
		}
		size += len(k) + len(v)
		fields = append(fields, k, v)
	}
	if p.cfg.MaxEventSize > 0 && size > p.cfg.MaxEventSize {
		return nil, fmt.Errorf("%w: %d bytes (data %d bytes) exceeds the limit of %d bytes", ErrEventTooLarge, size, len(msg.Payload), p.cfg.MaxEventSize)
	}
	return append(fields, FieldData, []byte(msg.Payload)), nil
}

// emptyRefused lists the attributes that address or name an event: set
// with an empty value (bus.WithUser("") of a field nobody filled in), they
// would be written as "user=" and mean nothing, so Publish refuses them.
var emptyRefused = [...]string{AttrRoom, AttrUser, AttrSubject}

// checkAddressing refuses an addressing attribute that is present but empty.
func checkAddressing(md message.Metadata) error {
	for _, k := range emptyRefused {
		if v, ok := md[k]; ok && v == "" {
			return fmt.Errorf("%w: %s is empty: give a non-empty %s, or leave the attribute out", ErrInvalidAttribute, k, k)
		}
	}
	return nil
}

// applySchema validates data against sch and names its version in
// dataschema. A dataschema of the bus's form (SchemaURI) is the publisher's
// to set: without a schema it is removed; another value (a URL a producer
// chose) is kept when the type has no schema.
func applySchema(topic string, md message.Metadata, data []byte, sch *compiledSchema) error {
	if sch == nil {
		if _, _, ours := ParseSchemaURI(md.Get(AttrDataSchema)); ours {
			delete(md, AttrDataSchema)
		}
		return nil
	}
	if !IsJSONContentType(md[AttrDataContentType]) {
		return fmt.Errorf("%w: %w: %s has a JSON Schema (%s), so its datacontenttype must be JSON, not %q", ErrInvalidData, ErrSchemaViolation, topic, sch.uri, md[AttrDataContentType])
	}
	if err := sch.validate(topic, data); err != nil {
		return err
	}
	md[AttrDataSchema] = sch.uri
	return nil
}

// IsAddressed reports whether msg is addressed to browsers: to a room, a
// user, or everyone (broadcast). Such events are also written to the push
// stream (Config.PushKey) that the gateway serves.
func IsAddressed(msg *message.Message) bool {
	return msg.Metadata.Get(AttrRoom) != "" || msg.Metadata.Get(AttrUser) != "" || msg.Metadata.Get(AttrBroadcast) == "true"
}

// IsJSONContentType reports whether a datacontenttype denotes JSON
// ("application/json", or any "+json" media type).
func IsJSONContentType(ct string) bool {
	if ct == DefaultContentType { // the common case, without parsing
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// Close marks the publisher closed; later Publish calls return ErrClosed. It
// never closes the Redis client. Safe to call more than once.
func (p *Publisher) Close() error {
	p.closed.Store(true)
	return nil
}

// republish writes a stored event (its stream fields, as read back) to the
// stream of topic through the checks of Publish — the type's current
// schema included, whose version replaces its dataschema — with extra
// fields appended (redrive's AttrRedriveGroup). It writes no push-stream
// copy and registers no type: the event was delivered before.
func (p *Publisher) republish(ctx context.Context, topic string, stored map[string]string, extra ...any) error {
	if p.closed.Load() {
		return ErrClosed
	}
	if err := ValidateType(topic); err != nil {
		return err
	}
	msg := message.NewMessage(stored[AttrID], []byte(stored[FieldData]))
	for k, v := range stored {
		if k != FieldData {
			msg.Metadata[k] = v
		}
	}
	for _, k := range emptyRefused { // written empty before Publish refused it
		if msg.Metadata[k] == "" {
			delete(msg.Metadata, k)
		}
	}
	if msg.UUID == "" {
		msg.UUID = watermill.NewUUID()
	}
	msg.SetContext(ctx)
	span := p.tracer.enrich(ctx, topic, msg, 1)
	err := p.republishPrepared(ctx, topic, msg, extra)
	endSpans([]trace.Span{span}, err)
	return err
}

func (p *Publisher) republishPrepared(ctx context.Context, topic string, msg *message.Message, extra []any) error {
	sch, err := p.schemas.cache.latest(ctx, topic)
	if err != nil {
		return err
	}
	f, err := p.prepare(topic, msg, time.Now().UTC().Format(time.RFC3339Nano), sch)
	if err != nil {
		return fmt.Errorf("event %s not republished to %s: %w", msg.UUID, topic, err)
	}
	key := p.cfg.StreamKey(topic)
	if err := p.client.XAdd(ctx, p.xaddArgs(key, append(f, extra...))).Err(); err != nil {
		return fmt.Errorf("republish %s to %s: %w", msg.UUID, key, err)
	}
	return nil
}
