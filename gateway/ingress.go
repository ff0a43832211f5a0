package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
)

// Content types of the CloudEvents HTTP binding's modes.
const (
	// ContentTypeStructured is a single event in structured mode.
	ContentTypeStructured = "application/cloudevents+json"
	// ContentTypeBatch is a JSON array of structured-mode events.
	ContentTypeBatch = "application/cloudevents-batch+json"
)

// FieldError is a problem with one field of an ingress request: a
// CloudEvents attribute ("type", "source", an extension such as
// "broadcast"), "data", or an HTTP header. Err says what was wrong and what
// is allowed, and wraps a bus sentinel (bus.ErrInvalidType,
// bus.ErrInvalidData, bus.ErrInvalidAttribute, bus.ErrEventTooLarge) when
// one applies.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns e.Err.
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field string, err error) *FieldError { return &FieldError{Field: field, Err: err} }

// MessageFromEvent converts a CloudEvent into the Watermill message the bus
// publishes: UUID = the event id; metadata = every attribute (id, type,
// source, specversion, time, datacontenttype, dataschema, subject) and every
// extension (room, user, broadcast, correlationid, traceparent, ...), each
// in its canonical string form; payload = the data, as bytes.
//
// It checks what the bus publisher would refuse, so that a whole batch can be
// checked before any of it is published: the event must be valid CloudEvents
// 1.0, its type a valid bus event type, broadcast "true" or "false", and
// the data valid JSON when datacontenttype is a JSON type. Errors are
// *FieldError. The size limit is checked by the gateway, which knows the
// bus's configuration.
func MessageFromEvent(e event.Event) (*message.Message, error) {
	if v := e.SpecVersion(); v != event.CloudEventsVersionV1 {
		return nil, fieldErr(bus.AttrSpecVersion, fmt.Errorf("%w: specversion %q is not supported: use %q", bus.ErrInvalidAttribute, v, event.CloudEventsVersionV1))
	}
	if err := e.Validate(); err != nil {
		var verr event.ValidationError
		if errors.As(err, &verr) && len(verr) > 0 {
			names := make([]string, 0, len(verr))
			for k := range verr {
				names = append(names, k)
			}
			slices.Sort(names)
			msgs := make([]string, len(names))
			for i, k := range names {
				msgs[i] = k + ": " + verr[k].Error()
			}
			return nil, fieldErr(names[0], fmt.Errorf("%w: %s", bus.ErrInvalidAttribute, strings.Join(msgs, "; ")))
		}
		return nil, fieldErr("", fmt.Errorf("%w: %v", bus.ErrInvalidAttribute, err))
	}
	if err := bus.ValidateType(e.Type()); err != nil {
		return nil, fieldErr(bus.AttrType, err)
	}
	md := message.Metadata{
		bus.AttrID:          e.ID(),
		bus.AttrType:        e.Type(),
		bus.AttrSource:      e.Source(),
		bus.AttrSpecVersion: bus.SpecVersion,
	}
	if t := e.Time(); !t.IsZero() {
		md[bus.AttrTime] = t.UTC().Format(time.RFC3339Nano)
	}
	if ct := e.DataContentType(); ct != "" {
		md[bus.AttrDataContentType] = ct
	}
	if s := e.DataSchema(); s != "" {
		md[bus.AttrDataSchema] = s
	}
	if s := e.Subject(); s != "" {
		md[bus.AttrSubject] = s
	}
	for name, v := range e.Extensions() {
		if name != bus.ExtDeliverAt { // the one reserved name ingress takes: a due time
			if err := bus.CheckAttributeName(name); err != nil { // redrivegroup, data, _*, dlq_*
				return nil, fieldErr(name, err)
			}
		}
		s, err := types.Format(v)
		if err != nil {
			return nil, fieldErr(name, fmt.Errorf("%w: extension %q: %v", bus.ErrInvalidAttribute, name, err))
		}
		if name == bus.ExtDeliverAt { // delayed delivery: not an attribute, a due time
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return nil, fieldErr(name, fmt.Errorf("%w: %s %q is not an RFC 3339 time", bus.ErrInvalidAttribute, name, s))
			}
			s, name = strconv.FormatInt(t.UnixMilli(), 10), bus.MetaDeliverAt
		}
		md[name] = s
	}
	if b, ok := md[bus.AttrBroadcast]; ok && b != "true" && b != "false" {
		return nil, fieldErr(bus.AttrBroadcast, fmt.Errorf("%w: broadcast %q must be true or false", bus.ErrInvalidAttribute, b))
	}
	data := e.Data()
	if ct, ok := md[bus.AttrDataContentType]; ok && bus.IsJSONContentType(ct) {
		// White space around JSON is not data (the SDK keeps what
		// surrounded the "data" member of a structured event).
		data = bytes.TrimSpace(data)
		if len(data) > 0 && !json.Valid(data) {
			return nil, fieldErr(bus.FieldData, fmt.Errorf("%w: data is not valid JSON but datacontenttype is %q", bus.ErrInvalidData, ct))
		}
	}
	msg := message.NewMessage(e.ID(), data)
	msg.Metadata = md
	return msg, nil
}

// UnmarshalCloudEvent reads one CloudEvent from r, in structured mode
// (Content-Type application/cloudevents+json) or binary mode (ce-*
// headers, body = data), with the CloudEvents SDK, and converts it with
// MessageFromEvent. A W3C traceparent/tracestate header is taken when the
// event carries no such extension. The topic is ignored: the event's type
// is its topic.
//
// Its signature is watermill-http's UnmarshalMessageFunc, so it can feed a
// watermill-http Subscriber of one's own, one event per request. The
// gateway's ingress uses a richer one (it also takes batches, and answers
// with the ids or a JSON error; see docs/gateway.md).
func UnmarshalCloudEvent(_ string, r *http.Request) (*message.Message, error) {
	e, err := cehttp.NewEventFromHTTPRequest(r)
	if err != nil {
		return nil, parseError(err)
	}
	msg, err := MessageFromEvent(*e)
	if err != nil {
		return nil, err
	}
	traceFromHeaders(msg, r.Header)
	return msg, nil
}

// traceFromHeaders copies the W3C trace context headers into msg when the
// event has no traceparent of its own.
func traceFromHeaders(msg *message.Message, h http.Header) {
	if msg.Metadata.Get(bus.AttrTraceParent) != "" {
		return
	}
	if tp := strings.TrimSpace(h.Get("traceparent")); tp != "" {
		msg.Metadata.Set(bus.AttrTraceParent, tp)
		if ts := strings.TrimSpace(h.Get("tracestate")); ts != "" {
			msg.Metadata.Set(bus.AttrTraceState, ts)
		}
	}
}

// parseError turns a CloudEvents SDK decoding error into a FieldError.
func parseError(err error) *FieldError {
	var verr event.ValidationError
	if errors.As(err, &verr) {
		for k, v := range verr {
			return fieldErr(k, fmt.Errorf("%w: %v", bus.ErrInvalidAttribute, v))
		}
	}
	return fieldErr("", fmt.Errorf("%w: not a valid CloudEvent: %v", bus.ErrInvalidAttribute, err))
}

// serveEvents is POST /v1/events. See docs/gateway.md. It answers what
// the gateway decides before any decoding (401/403, 429, 413 on the body
// size, 503 while closing), reads the body, decodes and checks its events
// (readEvents), publishes them and answers with their ids or the failure,
// all on the request's goroutine (gate.go says why no Subscriber sits in
// between).
func (g *Gateway) serveEvents(w http.ResponseWriter, r *http.Request) {
	p, err := g.ingress.Authenticate(r)
	if err != nil {
		writeAuthError(w, err)
		return
	}
	if !g.allow(r.Context(), p.User) {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(1/g.cfg.RateLimit.PerSecond))))
		writeError(w, http.StatusTooManyRequests, "", fmt.Sprintf("rate limit exceeded: at most %v requests per second (bursts of %d) per client; nothing was published", g.cfg.RateLimit.PerSecond, g.cfg.RateLimit.Burst))
		return
	}
	limit := g.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("body is %d bytes: at most %d bytes are accepted; nothing was published", r.ContentLength, limit))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("body is larger than %d bytes; nothing was published", limit))
			return
		}
		writeError(w, http.StatusBadRequest, "", "cannot read the request body")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))

	if !g.gate.enter() {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "", "the gateway is shutting down: retry later; nothing was published")
		return
	}
	defer g.gate.leave()
	msgs, status, fe := g.readEvents(r, body)
	if fe != nil {
		(&answer{status: status, field: fe.Field, message: fe.Err.Error() + "; nothing was published"}).write(w)
		return
	}
	if done, err := g.publish(msgs); err != nil {
		g.publishFailure(err, done, len(msgs)).write(w)
		return
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.UUID
	}
	writeAccepted(w, ids)
}

// readEvents decodes the body into messages, every one checked against
// what the bus publisher would refuse. On error it returns the status
// (400 or 413) and the field at fault.
func (g *Gateway) readEvents(r *http.Request, body []byte) ([]*message.Message, int, *FieldError) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var events []event.Event
	single := true
	switch {
	case mt == ContentTypeBatch:
		single = false
		evs, err := cehttp.NewEventsFromHTTPRequest(r)
		if err != nil {
			return nil, http.StatusBadRequest, batchError(body, err)
		}
		if len(evs) == 0 {
			return nil, http.StatusBadRequest, fieldErr("", fmt.Errorf("%w: the batch holds no events", bus.ErrInvalidAttribute))
		}
		if len(evs) > g.cfg.MaxBatchEvents {
			return nil, http.StatusRequestEntityTooLarge, fieldErr("", fmt.Errorf("%w: the batch holds %d events: at most %d are accepted", bus.ErrEventTooLarge, len(evs), g.cfg.MaxBatchEvents))
		}
		events = evs
	case mt == ContentTypeStructured || r.Header.Get("ce-specversion") != "":
		e, err := cehttp.NewEventFromHTTPRequest(r)
		if err != nil {
			if fe := reservedNameError(r.Header, body, mt == ContentTypeStructured); fe != nil {
				return nil, http.StatusBadRequest, fe
			}
			return nil, http.StatusBadRequest, parseError(err)
		}
		events = []event.Event{*e}
	default:
		return nil, http.StatusBadRequest, fieldErr("Content-Type", fmt.Errorf("%w: send a CloudEvent: Content-Type %s (structured mode), %s (batch), or ce-specversion, ce-id, ce-type, ce-source headers with the data as body (binary mode)", bus.ErrInvalidAttribute, ContentTypeStructured, ContentTypeBatch))
	}

	msgs := make([]*message.Message, len(events))
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for i, e := range events {
		msg, err := MessageFromEvent(e)
		if err == nil {
			if single {
				traceFromHeaders(msg, r.Header)
			}
			err = g.complete(msg, now)
		}
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				fe = fieldErr("", err)
			}
			if len(events) > 1 {
				fe = fieldErr(fe.Field, fmt.Errorf("event %d of %d (id %q): %w", i+1, len(events), e.ID(), fe.Err))
			}
			status := http.StatusBadRequest
			if errors.Is(fe, bus.ErrEventTooLarge) {
				status = http.StatusRequestEntityTooLarge
			}
			return nil, status, fe
		}
		msgs[i] = msg
	}
	return msgs, 0, nil
}

// reservedNameError finds a reserved attribute name (bus.CheckAttributeName)
// in a structured event's members or a binary event's ce-* headers. The
// CloudEvents SDK refuses names outside [a-zA-Z0-9] (every "_" and "dlq_"
// one) without saying which; this names the field.
func reservedNameError(h http.Header, body []byte, structured bool) *FieldError {
	var names []string
	if structured {
		var members map[string]json.RawMessage
		if json.Unmarshal(body, &members) != nil {
			return nil
		}
		for k := range members {
			names = append(names, k)
		}
	} else {
		for k := range h {
			if n, ok := strings.CutPrefix(strings.ToLower(k), "ce-"); ok {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	for _, n := range names {
		if n == bus.ExtDeliverAt || (structured && n == bus.FieldData) {
			continue
		}
		if err := bus.CheckAttributeName(n); err != nil {
			return fieldErr(n, err)
		}
	}
	return nil
}

// batchError locates the bad element of a batch the SDK could not decode.
func batchError(body []byte, err error) *FieldError {
	var raw []json.RawMessage
	if json.Unmarshal(body, &raw) != nil {
		return fieldErr("", fmt.Errorf("%w: a batch must be a JSON array of CloudEvents in structured mode: %v", bus.ErrInvalidAttribute, err))
	}
	for i, item := range raw {
		var e event.Event
		if ierr := json.Unmarshal(item, &e); ierr != nil {
			fe := reservedNameError(nil, item, true)
			if fe == nil {
				fe = parseError(ierr)
			}
			return fieldErr(fe.Field, fmt.Errorf("event %d of %d: %w", i+1, len(raw), fe.Err))
		}
	}
	return parseError(err)
}

// complete adds the attributes the bus publisher would add (time, source
// is required already, datacontenttype) and applies the checks that depend
// on the bus configuration, exactly as the publisher will, so that a batch
// that passes here is not refused there.
func (g *Gateway) complete(msg *message.Message, now string) error {
	bc := g.bus.Config()
	md := msg.Metadata
	if md.Get(bus.AttrTime) == "" {
		md[bus.AttrTime] = now
	}
	if md.Get(bus.AttrDataContentType) == "" {
		md[bus.AttrDataContentType] = bc.DefaultContentType
		if len(msg.Payload) > 0 && bus.IsJSONContentType(bc.DefaultContentType) && !json.Valid(msg.Payload) {
			return fieldErr(bus.FieldData, fmt.Errorf("%w: data is not valid JSON, and the default datacontenttype is %q: set datacontenttype", bus.ErrInvalidData, bc.DefaultContentType))
		}
	}
	size := len(bus.FieldData) + len(msg.Payload)
	for k, v := range md {
		size += len(k) + len(v)
	}
	if bc.MaxEventSize > 0 && size > bc.MaxEventSize {
		return fieldErr(bus.FieldData, fmt.Errorf("%w: %d bytes (data %d bytes) exceeds the limit of %d bytes", bus.ErrEventTooLarge, size, len(msg.Payload), bc.MaxEventSize))
	}
	return nil
}

// publish publishes msgs in order, one bus Publish call per run of
// consecutive events of one type, under Config.PublishTimeout. It returns
// how many events were published before an error.
func (g *Gateway) publish(msgs []*message.Message) (int, error) {
	// Not the request's context: a client that hangs up must not cut a
	// publish in the middle.
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.PublishTimeout)
	defer cancel()
	pub := g.bus.Publisher()
	for start := 0; start < len(msgs); {
		typ := msgs[start].Metadata.Get(bus.AttrType)
		end := start + 1
		for end < len(msgs) && msgs[end].Metadata.Get(bus.AttrType) == typ {
			end++
		}
		for _, m := range msgs[start:end] {
			m.SetContext(ctx)
		}
		if err := pub.Publish(typ, msgs[start:end]...); err != nil {
			return start, err
		}
		start = end
	}
	return len(msgs), nil
}

// publishFailure is the answer to a failed publish: 400/413 for what the
// bus refused (nothing written), 503 when Redis is unavailable, 500 for any
// other Redis error. Details of Redis errors are logged, not sent.
func (g *Gateway) publishFailure(err error, done, total int) *answer {
	a := &answer{}
	switch {
	case errors.Is(err, bus.ErrInvalidType):
		a.status, a.field = http.StatusBadRequest, bus.AttrType
	case errors.Is(err, bus.ErrInvalidData):
		a.status, a.field = http.StatusBadRequest, bus.FieldData
	case errors.Is(err, bus.ErrEventTooLarge):
		a.status, a.field = http.StatusRequestEntityTooLarge, bus.FieldData
	case errors.Is(err, bus.ErrInvalidAttribute), errors.Is(err, bus.ErrDelayTooLong):
		a.status = http.StatusBadRequest
	case errors.Is(err, bus.ErrClosed), !isPermanentRedisError(err):
		a.status, a.message, a.retryAfter = http.StatusServiceUnavailable, "the event store is unavailable: retry later", "1"
	default:
		a.status, a.message = http.StatusInternalServerError, "the event store refused the events"
	}
	if a.message == "" {
		a.message = err.Error()
	} else {
		g.logger.Error("Ingress publish failed", err, watermill.LogFields{"published": done, "events": total})
	}
	if done == 0 {
		a.message += "; nothing was published"
	} else {
		a.message += fmt.Sprintf("; events 1 to %d of %d were published, the rest were not", done, total)
	}
	return a
}

// isPermanentRedisError reports whether err is an error reply from Redis
// that retrying will not cure (WRONGTYPE, say). Connection errors, timeouts
// and the replies of a server that is loading, out of memory, read-only or
// failing over are not permanent.
func isPermanentRedisError(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) || errors.Is(err, redis.Nil) {
		return false
	}
	for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "OOM", "NOREPLICAS", "MOVED", "ASK"} {
		if strings.HasPrefix(rerr.Error(), p) {
			return false
		}
	}
	return true
}
