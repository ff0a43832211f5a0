package bus

import (
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
)

// Publisher writes events to their streams. It implements message.Publisher:
// the topic is the event type. Publish is safe for concurrent use.
//
// Before writing, it enriches each message (id, type, source, specversion,
// time, datacontenttype) and validates it (type name, size, JSON data, known
// attributes); if any message of a call is invalid, nothing is written. A
// call with several messages sends them in one pipeline (one round trip).
// The first publish of a type by this process also records the type in the
// registry that wildcard subscriptions follow, in the same round trip.
type Publisher struct {
	cfg    Config
	client redis.UniversalClient
	logger watermill.LoggerAdapter

	known  sync.Map // event type -> struct{}: types already in the registry
	closed atomic.Bool
	hooks  atomic.Pointer[[]*PublishHook] // copy on write

	dedupStats dedupStats // dedup.go
}

// PublishHook is told the outcome of every Publish call of a Publisher: the
// topic as given, how many events the call carried, and the error it
// returned (nil: all of them were written). It runs on the publishing
// goroutine after the write; it must be quick and must not publish.
type PublishHook func(topic string, events int, err error)

// OnPublish adds h to the hooks called after every Publish call (including
// calls that fail validation; not calls with no message) and returns a
// function that removes it. It is how package observe counts every publish
// of the bus, however it is made. Safe for concurrent use with Publish.
func (p *Publisher) OnPublish(h PublishHook) (remove func()) {
	entry := &h // identity of this registration
	p.updateHooks(func(hs []*PublishHook) []*PublishHook { return append(hs, entry) })
	var once sync.Once
	return func() {
		once.Do(func() {
			p.updateHooks(func(hs []*PublishHook) []*PublishHook {
				out := hs[:0:0]
				for _, e := range hs {
					if e != entry {
						out = append(out, e)
					}
				}
				return out
			})
		})
	}
}

func (p *Publisher) updateHooks(change func([]*PublishHook) []*PublishHook) {
	for {
		old := p.hooks.Load()
		var hs []*PublishHook
		if old != nil {
			hs = append(hs, *old...)
		}
		hs = change(hs)
		if p.hooks.CompareAndSwap(old, &hs) {
			return
		}
	}
}

var _ message.Publisher = (*Publisher)(nil)

func newPublisher(cfg Config, client redis.UniversalClient, logger watermill.LoggerAdapter) *Publisher {
	return &Publisher{cfg: cfg, client: client, logger: logger}
}

// Publish validates, enriches and writes msgs as events of type topic. It
// takes its context from the first message (msg.Context()), as Watermill
// publishers do. On success every message's metadata holds the attributes
// that were written.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	if len(msgs) == 0 {
		if p.closed.Load() {
			return ErrClosed
		}
		return nil
	}
	err := p.publish(topic, msgs)
	if hs := p.hooks.Load(); hs != nil {
		for _, h := range *hs {
			(*h)(topic, len(msgs), err)
		}
	}
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
	now := time.Now().UTC().Format(time.RFC3339Nano) // once per call, not per event
	fields := make([][]any, len(msgs))
	addressed := false
	for i, msg := range msgs {
		f, err := p.prepare(topic, msg, now)
		if err != nil {
			return fmt.Errorf("event %d of %d (id %s) not published, nothing written: %w", i+1, len(msgs), msg.UUID, err)
		}
		fields[i] = f
		addressed = addressed || IsAddressed(msg)
	}
	if dues != nil {
		return p.publishDelayed(topic, msgs, fields, dues)
	}
	ctx := msgs[0].Context()
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
func (p *Publisher) prepare(topic string, msg *message.Message, now string) ([]any, error) {
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
	if b := md.Get(AttrBroadcast); b != "" && b != "true" && b != "false" {
		return nil, fmt.Errorf("%w: broadcast %q must be \"true\" or \"false\"", ErrInvalidAttribute, b)
	}
	if len(msg.Payload) > 0 && IsJSONContentType(md[AttrDataContentType]) && !json.Valid(msg.Payload) {
		return nil, fmt.Errorf("%w: data is not valid JSON but datacontenttype is %q", ErrInvalidData, md[AttrDataContentType])
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
