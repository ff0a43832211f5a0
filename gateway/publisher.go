package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmhttp "github.com/ThreeDotsLabs/watermill-http/v2/pkg/http"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/shared-infra/eventbus/bus"
)

// IngressPublisherConfig configures [NewIngressPublisher].
type IngressPublisherConfig struct {
	// URL is the gateway's ingress endpoint, e.g.
	// "https://events.example.com/v1/events". Required: an absolute http or
	// https URL.
	URL string
	// Token is sent as "Authorization: Bearer <Token>": an API key of the
	// gateway's Config.Ingress, or a JWT that grants publishing. Empty sends
	// no Authorization header.
	Token string
	// Source is the CloudEvents source of messages whose metadata has none.
	// Default none: such a message is refused, as the gateway would.
	Source string
	// Client sends the requests. Default http.DefaultClient. Set its
	// Timeout: watermill-http's Publisher waits for each answer.
	Client *http.Client
}

// Validate reports every problem with the config at once. It never changes
// c.
func (c IngressPublisherConfig) Validate() error {
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("gateway: IngressPublisherConfig: URL %q is not an absolute http or https URL, such as \"https://events.example.com%s\"", c.URL, EventsPath))
	}
	if strings.ContainsAny(c.Token, "\r\n") {
		errs = append(errs, errors.New("gateway: IngressPublisherConfig: Token contains a line break"))
	}
	return invalidConfig(errs)
}

// NewIngressPublisher returns a watermill-http Publisher that sends each
// message to a gateway's POST /v1/events as one CloudEvent in binary mode
// (ce-* headers, body = payload), built with the CloudEvents SDK from the
// message by [EventFromMessage]. Like the bus publisher, it takes the event
// type as the topic: pub.Publish("photo.uploaded", msg).
//
// A request the gateway does not answer with 2xx makes Publish return an
// error wrapping watermill-http's ErrErrorResponse with the status
// (400/413: fix the event; 401/403: the token; 429/503: retry later); the
// gateway's JSON error body is logged at Info level. Messages of one call
// are sent one after another; Publish stops at the first failure. Each
// request takes its context from msg.Context().
func NewIngressPublisher(cfg IngressPublisherConfig, logger watermill.LoggerAdapter) (*wmhttp.Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return wmhttp.NewPublisher(wmhttp.PublisherConfig{
		MarshalMessageFunc: cfg.marshal,
		Client:             cfg.Client,
	}, logger)
}

// marshal is the Publisher's MarshalMessageFunc: topic is the event type.
func (c IngressPublisherConfig) marshal(topic string, msg *message.Message) (*http.Request, error) {
	e, err := eventFromMessage(topic, msg, c.Source)
	if err != nil {
		return nil, err
	}
	req, err := cehttp.NewHTTPRequestFromEvent(msg.Context(), c.URL, e)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

// EventFromMessage is the inverse of [MessageFromEvent]: the CloudEvent of
// a Watermill message in the bus's form. id = msg.UUID; type = topic (the
// "type" metadata must be empty or equal; with an empty topic it is the
// type); source, specversion (empty or "1.0"), time (RFC 3339),
// datacontenttype, dataschema and subject from the metadata; every other
// metadata key is an extension, and must be a CloudEvents extension name
// (lower-case letters and digits), except the bus subscriber's "_eventbus_"
// keys, which are left out; data = the payload, as is. Errors are
// *FieldError wrapping bus.ErrInvalidAttribute or bus.ErrInvalidType.
func EventFromMessage(topic string, msg *message.Message) (event.Event, error) {
	return eventFromMessage(topic, msg, "")
}

func eventFromMessage(topic string, msg *message.Message, defaultSource string) (event.Event, error) {
	md := msg.Metadata
	typ := md.Get(bus.AttrType)
	switch {
	case topic == "":
	case typ == "":
		typ = topic
	case typ != topic:
		return event.Event{}, fieldErr(bus.AttrType, fmt.Errorf("%w: type attribute %q does not match the topic %q it is published to", bus.ErrInvalidAttribute, typ, topic))
	}
	if err := bus.ValidateType(typ); err != nil {
		return event.Event{}, fieldErr(bus.AttrType, err)
	}
	if id := md.Get(bus.AttrID); id != "" && id != msg.UUID {
		return event.Event{}, fieldErr(bus.AttrID, fmt.Errorf("%w: id attribute %q differs from the message UUID %q", bus.ErrInvalidAttribute, id, msg.UUID))
	}
	if v := md.Get(bus.AttrSpecVersion); v != "" && v != bus.SpecVersion {
		return event.Event{}, fieldErr(bus.AttrSpecVersion, fmt.Errorf("%w: specversion %q is not supported: use %q", bus.ErrInvalidAttribute, v, bus.SpecVersion))
	}
	e := event.New(event.CloudEventsVersionV1)
	e.SetID(msg.UUID)
	e.SetType(typ)
	if s := md.Get(bus.AttrSource); s != "" {
		e.SetSource(s)
	} else {
		e.SetSource(defaultSource)
	}
	for k, v := range md {
		switch k {
		case bus.AttrID, bus.AttrType, bus.AttrSpecVersion, bus.AttrSource:
		case bus.AttrTime:
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return event.Event{}, fieldErr(k, fmt.Errorf("%w: time %q is not RFC 3339", bus.ErrInvalidAttribute, v))
			}
			e.SetTime(t)
		case bus.AttrDataContentType:
			e.SetDataContentType(v)
		case bus.AttrDataSchema:
			e.SetDataSchema(v)
		case bus.AttrSubject:
			e.SetSubject(v)
		case bus.FieldData:
			return event.Event{}, fieldErr(k, fmt.Errorf("%w: metadata key %q is reserved for the data", bus.ErrInvalidAttribute, k))
		default:
			if strings.HasPrefix(k, "_eventbus_") {
				continue
			}
			if !isExtensionName(k) {
				return event.Event{}, fieldErr(k, fmt.Errorf("%w: metadata key %q is not a CloudEvents extension name: use lower-case letters a-z and digits only", bus.ErrInvalidAttribute, k))
			}
			e.SetExtension(k, v)
		}
	}
	if len(msg.Payload) > 0 {
		e.DataEncoded = msg.Payload
	}
	if err := e.Validate(); err != nil {
		return event.Event{}, parseError(err)
	}
	return e, nil
}

func isExtensionName(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
