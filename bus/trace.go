package bus

import (
	"context"
	"net"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// InstrumentationName names the tracer of the bus's spans (the publisher's
// "publish <type>" and the router's "process <type>").
const InstrumentationName = "github.com/shared-infra/eventbus"

// messagingSystem is the spans' messaging.system (the semantic conventions'
// well-known values name no Redis). The attribute names come from semconv
// v1.43.0, the newest the otel module in go.mod has; the tracer carries its
// schema URL. middleware/trace.go uses the same version for "process" spans.
var messagingSystem = semconv.MessagingSystemKey.String("redis")

// ServerAttributes returns server.address and server.port of the Redis
// server c talks to, for spans: none for a cluster, ring or Sentinel client,
// which has no single server.
func ServerAttributes(c redis.UniversalClient) []attribute.KeyValue {
	cl, ok := c.(*redis.Client)
	if !ok {
		return nil
	}
	host, port, err := net.SplitHostPort(cl.Options().Addr) // a Sentinel client's Addr is "FailoverClient"
	if err != nil {
		return nil
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return []attribute.KeyValue{semconv.ServerAddress(host)}
	}
	return []attribute.KeyValue{semconv.ServerAddress(host), semconv.ServerPort(n)}
}

// Parent is the event a handler is working on, as seen by the events it
// publishes: they get its correlation id and its id as causation id.
type Parent struct {
	ID            string
	CorrelationID string
}

type parentKey struct{}

// WithParent returns ctx carrying p. The router puts the event being handled
// in its handler's ctx this way; every Publish from that ctx (through the
// bus Publisher, however it was obtained) then carries p's correlation id and
// p.ID as causation id.
func WithParent(ctx context.Context, p Parent) context.Context {
	return context.WithValue(ctx, parentKey{}, p)
}

// ParentFromContext returns the event being handled in ctx, if any.
func ParentFromContext(ctx context.Context) (Parent, bool) {
	p, ok := ctx.Value(parentKey{}).(Parent)
	return p, ok
}

// MetadataCarrier exposes message metadata to OpenTelemetry propagators.
type MetadataCarrier message.Metadata

// Get returns the value of key k.
func (c MetadataCarrier) Get(k string) string { return c[k] }

// Set sets key k to v.
func (c MetadataCarrier) Set(k, v string) { c[k] = v }

// Keys returns every key.
func (c MetadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// tracer is the publisher's side of tracing: correlation and causation ids
// from the ctx's Parent, W3C trace context from the ctx's span (or from a
// traceparent the caller set), and a producer span per event when a
// TracerProvider is configured.
type tracer struct {
	t       trace.Tracer
	prop    propagation.TextMapPropagator
	noSpans bool
	server  []attribute.KeyValue // ServerAttributes of the bus's client
}

func newTracer(tp trace.TracerProvider, client redis.UniversalClient) *tracer {
	noSpans := tp == nil
	if noSpans {
		tp = noop.NewTracerProvider()
	}
	return &tracer{
		t:       tp.Tracer(InstrumentationName, trace.WithSchemaURL(semconv.SchemaURL)),
		prop:    propagation.TraceContext{},
		noSpans: noSpans,
		server:  ServerAttributes(client),
	}
}

// enrich sets correlationid, causationid and traceparent/tracestate on msg
// from ctx, keeping attributes already set (see carry), and returns the
// producer span started for it (nil without a TracerProvider); batch is
// the number of events of the Publish call. The caller ends it.
func (t *tracer) enrich(ctx context.Context, topic string, msg *message.Message, batch int) trace.Span {
	ctx = t.carry(ctx, msg)
	if t.noSpans {
		return nil
	}
	attrs := append(make([]attribute.KeyValue, 0, 6+len(t.server)),
		messagingSystem,
		semconv.MessagingOperationName("publish"),
		semconv.MessagingOperationTypeSend,
		semconv.MessagingDestinationName(topic),
		semconv.MessagingMessageID(msg.UUID),
	)
	if batch > 1 { // the conventions: not set for a single message
		attrs = append(attrs, semconv.MessagingBatchMessageCount(batch))
	}
	attrs = append(attrs, t.server...)
	_, span := t.t.Start(ctx, "publish "+topic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attrs...))
	if sc := span.SpanContext(); sc.IsValid() {
		t.prop.Inject(trace.ContextWithSpanContext(context.Background(), sc), MetadataCarrier(md(msg)))
	}
	return span
}

// carry sets correlationid and causationid on msg from ctx's Parent (a new
// correlation, the event's own id, when there is none) and traceparent/
// tracestate from ctx's span, keeping attributes already set, and returns
// the context a producer span would start from: ctx, or the trace of a
// traceparent the caller set by hand.
func (t *tracer) carry(ctx context.Context, msg *message.Message) context.Context {
	md := md(msg)
	if par, ok := ParentFromContext(ctx); ok {
		if md.Get(AttrCorrelationID) == "" {
			md.Set(AttrCorrelationID, par.CorrelationID)
		}
		if md.Get(AttrCausationID) == "" {
			md.Set(AttrCausationID, par.ID)
		}
	} else if md.Get(AttrCorrelationID) == "" {
		md.Set(AttrCorrelationID, msg.UUID)
	}
	if md.Get(AttrTraceParent) != "" && !trace.SpanContextFromContext(ctx).IsValid() {
		// The caller set a traceparent by hand (or redrive kept the
		// event's own): continue that trace.
		ctx = t.prop.Extract(ctx, MetadataCarrier(md))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		t.prop.Inject(trace.ContextWithSpanContext(context.Background(), sc), MetadataCarrier(md))
	}
	return ctx
}

// md returns msg's metadata, made if nil.
func md(msg *message.Message) message.Metadata {
	if msg.Metadata == nil {
		msg.Metadata = make(message.Metadata)
	}
	return msg.Metadata
}

// endSpans ends the producer spans of one Publish call, recording err.
func endSpans(spans []trace.Span, err error) {
	for _, s := range spans {
		if s == nil {
			continue
		}
		if err != nil {
			s.RecordError(err)
			s.SetStatus(codes.Error, err.Error())
			s.SetAttributes(semconv.ErrorType(err))
		}
		s.End()
	}
}
