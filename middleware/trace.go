package middleware

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/shared-infra/eventbus/bus"
)

const instrumentationName = "github.com/shared-infra/eventbus"

// Tracing carries W3C trace context and the CloudEvents correlation ids
// through the bus. Its Middleware extracts traceparent/tracestate from the
// incoming event into the handler's context and starts a span per attempt;
// its Publisher decorator puts the current trace context (a span per
// publish) and correlationid/causationid on every event published from
// that context. With a nil TracerProvider no spans are recorded, but trace
// ids still propagate from event to event.
type Tracing struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	// noSpans is set for a nil TracerProvider: the middleware then only
	// carries the trace context (what a no-op tracer's span would do) and
	// builds no span, name or attributes for each event.
	noSpans bool
}

// NewTracing returns a Tracing using tp (nil: no spans recorded).
func NewTracing(tp trace.TracerProvider) *Tracing {
	noSpans := tp == nil
	if noSpans {
		tp = noop.NewTracerProvider()
	}
	return &Tracing{
		tracer:  tp.Tracer(instrumentationName),
		prop:    propagation.TraceContext{},
		noSpans: noSpans,
	}
}

// Parent is the event a handler is working on, as seen by the events it
// publishes: they get its correlation id and its id as causation id.
type Parent struct {
	ID            string
	CorrelationID string
}

type parentKey struct{}

// WithParent returns ctx carrying p.
func WithParent(ctx context.Context, p Parent) context.Context {
	return context.WithValue(ctx, parentKey{}, p)
}

// ParentFromContext returns the event being handled in ctx, if any.
func ParentFromContext(ctx context.Context) (Parent, bool) {
	p, ok := ctx.Value(parentKey{}).(Parent)
	return p, ok
}

// metadataCarrier exposes message metadata to OTel propagators.
type metadataCarrier message.Metadata

func (c metadataCarrier) Get(k string) string { return c[k] }
func (c metadataCarrier) Set(k, v string)     { c[k] = v }
func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Middleware implements message.HandlerMiddleware. Put it inside Retry so
// every attempt gets its own span.
func (t *Tracing) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		parent := msg.Context()
		ctx := t.prop.Extract(parent, metadataCarrier(msg.Metadata))
		corr := msg.Metadata.Get(bus.AttrCorrelationID)
		if corr == "" {
			corr = msg.UUID
		}
		ctx = WithParent(ctx, Parent{ID: msg.UUID, CorrelationID: corr})
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
			attribute.String("messaging.system", "redis"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", typ),
			attribute.String("messaging.message.id", msg.UUID),
			attribute.String("messaging.consumer.group.name", msg.Metadata.Get(bus.MetaGroup)),
			attribute.String("messaging.message.conversation_id", corr),
			attribute.Int("eventbus.attempt", Attempts(msg)),
		))
	defer span.End()
	msg.SetContext(ctx)
	out, err := h(msg)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return out, err
}

// Publisher returns pub wrapped so that each published event carries the
// trace context and correlation ids of its message's context
// (msg.Context()): a "publish <type>" span is started there and its
// traceparent written into the event; correlationid is inherited from the
// event being handled (or is the event's own id when it starts a chain) and
// causationid is the handled event's id. Attributes already set are kept.
func (t *Tracing) Publisher(pub message.Publisher) message.Publisher {
	return tracingPublisher{Publisher: pub, t: t}
}

type tracingPublisher struct {
	message.Publisher
	t *Tracing
}

func (p tracingPublisher) Publish(topic string, msgs ...*message.Message) error {
	spans := make([]trace.Span, len(msgs))
	for i, m := range msgs {
		ctx := m.Context()
		if m.UUID == "" {
			m.UUID = newID()
		}
		if par, ok := ParentFromContext(ctx); ok {
			if m.Metadata.Get(bus.AttrCorrelationID) == "" {
				m.Metadata.Set(bus.AttrCorrelationID, par.CorrelationID)
			}
			if m.Metadata.Get(bus.AttrCausationID) == "" {
				m.Metadata.Set(bus.AttrCausationID, par.ID)
			}
		} else if m.Metadata.Get(bus.AttrCorrelationID) == "" {
			m.Metadata.Set(bus.AttrCorrelationID, m.UUID)
		}
		if m.Metadata.Get(bus.AttrTraceParent) != "" && !trace.SpanContextFromContext(ctx).IsValid() {
			// The caller set a traceparent by hand: continue that trace.
			ctx = p.t.prop.Extract(ctx, metadataCarrier(m.Metadata))
		}
		_, span := p.t.tracer.Start(ctx, "publish "+topic, trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				attribute.String("messaging.system", "redis"),
				attribute.String("messaging.operation.type", "send"),
				attribute.String("messaging.destination.name", topic),
				attribute.String("messaging.message.id", m.UUID),
			))
		spans[i] = span
		if sc := span.SpanContext(); sc.IsValid() {
			p.t.prop.Inject(trace.ContextWithSpanContext(context.Background(), sc), metadataCarrier(m.Metadata))
		}
	}
	err := p.Publisher.Publish(topic, msgs...)
	for _, s := range spans {
		if err != nil {
			s.RecordError(err)
			s.SetStatus(codes.Error, err.Error())
		}
		s.End()
	}
	return err
}

// TraceID returns the trace id of msg's traceparent attribute ("" if none),
// for log lines.
func TraceID(msg *message.Message) string {
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), metadataCarrier(msg.Metadata)))
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}
