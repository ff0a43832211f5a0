package bus

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// InstrumentationName names the tracer of the bus's spans (the publisher's
// "publish <type>" and the router's "process <type>").
const InstrumentationName = "github.com/shared-infra/eventbus"

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
}

func newTracer(tp trace.TracerProvider) *tracer {
	noSpans := tp == nil
	if noSpans {
		tp = noop.NewTracerProvider()
	}
	return &tracer{t: tp.Tracer(InstrumentationName), prop: propagation.TraceContext{}, noSpans: noSpans}
}

// enrich sets correlationid, causationid and traceparent/tracestate on msg
// from ctx, keeping attributes already set, and returns the producer span
// started for it (nil without a TracerProvider). The caller ends it.
func (t *tracer) enrich(ctx context.Context, topic string, msg *message.Message) trace.Span {
	md := msg.Metadata
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
	if t.noSpans {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			t.prop.Inject(trace.ContextWithSpanContext(context.Background(), sc), MetadataCarrier(md))
		}
		return nil
	}
	_, span := t.t.Start(ctx, "publish "+topic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "redis"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", topic),
			attribute.String("messaging.message.id", msg.UUID),
		))
	if sc := span.SpanContext(); sc.IsValid() {
		t.prop.Inject(trace.ContextWithSpanContext(context.Background(), sc), MetadataCarrier(md))
	}
	return span
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
		}
		s.End()
	}
}
