package middleware

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/shared-infra/eventbus/bus"
)

// Tracing is the consumer side of trace and correlation. Its Middleware
// extracts traceparent/tracestate from the incoming event into the
// handler's context, starts a "process <type>" span per attempt, and puts
// the event in the context as the bus.Parent of whatever the handler
// publishes: the bus Publisher (however obtained) then writes the trace
// context, correlationid and causationid on those events. With a nil
// TracerProvider no spans are recorded, but trace ids still propagate from
// event to event.
type Tracing struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	// noSpans is set for a nil TracerProvider: the middleware then only
	// carries the trace context (what a no-op tracer's span would do) and
	// builds no span, name or attributes for each event.
	noSpans bool
	attrs   []attribute.KeyValue // set on every span (server.address, server.port)
}

// NewTracing returns a Tracing using tp (nil: no spans recorded). attrs are
// set on every span: the router passes bus.ServerAttributes of its bus's
// client. Attribute names are those of semconv v1.43.0, as the bus's
// "publish" spans; the tracer carries that schema URL.
func NewTracing(tp trace.TracerProvider, attrs ...attribute.KeyValue) *Tracing {
	noSpans := tp == nil
	if noSpans {
		tp = noop.NewTracerProvider()
	}
	return &Tracing{
		tracer:  tp.Tracer(bus.InstrumentationName, trace.WithSchemaURL(semconv.SchemaURL)),
		prop:    propagation.TraceContext{},
		noSpans: noSpans,
		attrs:   attrs,
	}
}

// Middleware implements message.HandlerMiddleware. Put it inside Retry so
// every attempt gets its own span.
func (t *Tracing) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		parent := msg.Context()
		ctx := t.prop.Extract(parent, bus.MetadataCarrier(msg.Metadata))
		corr := msg.Metadata.Get(bus.AttrCorrelationID)
		if corr == "" {
			corr = msg.UUID
		}
		ctx = bus.WithParent(ctx, bus.Parent{ID: msg.UUID, CorrelationID: corr})
		msg.SetContext(ctx)
		defer msg.SetContext(parent)
		if t.noSpans {
			return h(msg)
		}
		return t.process(ctx, msg, corr, h)
	}
}

// process runs h for msg inside a "process <type>" span started from ctx.
// It is a function of its own so that the span's attributes take stack
// space only when spans are recorded: the handler chain runs on a fresh
// goroutine per event, and a deep chain makes each of them grow its stack.
func (t *Tracing) process(ctx context.Context, msg *message.Message, corr string, h message.HandlerFunc) ([]*message.Message, error) {
	typ := msg.Metadata.Get(bus.AttrType)
	ctx, span := t.tracer.Start(ctx, "process "+typ, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("redis"),
			semconv.MessagingOperationName("process"),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingDestinationName(typ),
			semconv.MessagingMessageID(msg.UUID),
			semconv.MessagingConsumerGroupName(msg.Metadata.Get(bus.MetaGroup)),
			semconv.MessagingMessageConversationID(corr),
			attribute.Int("eventbus.attempt", Attempts(msg)),
		),
		trace.WithAttributes(t.attrs...))
	defer span.End()
	msg.SetContext(ctx)
	out, err := h(msg)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(semconv.ErrorType(err))
	}
	return out, err
}

// TraceID returns the trace id of msg's traceparent attribute ("" if none),
// for log lines.
func TraceID(msg *message.Message) string {
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), bus.MetadataCarrier(msg.Metadata)))
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}
