package gateway

import (
	"bytes"
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmhttp "github.com/ThreeDotsLabs/watermill-http/v2/pkg/http"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-chi/chi"
)

// The ingress transport: every POST /v1/events that passes the gateway's
// own checks (CORS, credentials, rate, body size) is handed to a
// watermill-http Subscriber, mounted on a chi router of its own:
//
//  1. serveEvents puts an ingressCall in the request's context and serves
//     the request with the Subscriber's route, through an ingressWriter;
//  2. the Subscriber calls unmarshalRequest (its UnmarshalMessageFunc), which
//     decodes and checks the CloudEvents and returns one transport message
//     per request whose payload holds the request's events (gob-encoded
//     UUID, metadata and payload of each: the message stands alone). A refusal is
//     an error: the Subscriber answers 400 (ingressWriter refines it to 413
//     for a size limit) and nothing travels further;
//  3. the Subscriber sends the message on its channel and waits for its ack;
//     dispatch receives it and handles it on a goroutine of its own
//     (handleIngress): the events are published through the bus publisher,
//     then the message is acked with status 202, or nacked with the status
//     of the failure (503, 500, 400, 413) and its detail;
//  4. the Subscriber writes that status with WriteHeader, which ingressWriter
//     completes with the JSON body: {"ids":[...]} or an ErrorBody.

// transportEvent is one event in the payload of a transport message.
type transportEvent struct {
	UUID     string
	Metadata map[string]string
	Payload  []byte
}

// encodeTransport is the payload of a transport message: the events,
// gob-encoded. Gob keeps every string byte for byte (JSON would replace
// invalid UTF-8, which a binary-mode header may carry).
func encodeTransport(msgs []*message.Message) ([]byte, error) {
	evs := make([]transportEvent, len(msgs))
	for i, m := range msgs {
		evs[i] = transportEvent{UUID: m.UUID, Metadata: m.Metadata, Payload: m.Payload}
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(evs); err != nil {
		return nil, fmt.Errorf("gateway: encode the ingress transport message: %w", err)
	}
	return buf.Bytes(), nil
}

// decodeTransport is the inverse of encodeTransport.
func decodeTransport(payload []byte) ([]*message.Message, error) {
	var evs []transportEvent
	if err := gob.NewDecoder(bytes.NewReader(payload)).Decode(&evs); err != nil {
		return nil, fmt.Errorf("gateway: malformed ingress transport message: %w", err)
	}
	msgs := make([]*message.Message, len(evs))
	for i, e := range evs {
		msgs[i] = message.NewMessage(e.UUID, e.Payload)
		msgs[i].Metadata = e.Metadata
	}
	return msgs, nil
}

// answer is a refusal: the status, the field at fault, the message of the
// ErrorBody, and a Retry-After value (empty for none).
type answer struct {
	status     int
	field      string
	message    string
	retryAfter string
}

func (a *answer) write(w http.ResponseWriter) {
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	writeError(w, a.status, a.field, a.message)
}

// ingressCall is one request on its way through the Subscriber's route:
// what unmarshalRequest decoded or refused. It is written by
// unmarshalRequest and read by ingressWriter, both on the request's
// goroutine.
type ingressCall struct {
	body    []byte
	ids     []string         // the events' ids, once decoded
	refusal *answer          // set when unmarshalRequest refused the request
	msg     *message.Message // the transport message, once decoded
}

type ingressCallKey struct{}

// answerKey holds, in a transport message's context, the detail of the
// status handleIngress nacked it with.
type answerKey struct{}

func setAnswer(msg *message.Message, a *answer) {
	msg.SetContext(context.WithValue(msg.Context(), answerKey{}, a))
	wmhttp.SetResponseStatusCode(msg, a.status)
}

// ingressWriter is the http.ResponseWriter the Subscriber's route writes
// to. The Subscriber only sets a status code; ingressWriter writes the
// gateway's headers and JSON body with it.
type ingressWriter struct {
	http.ResponseWriter
	call     *ingressCall
	answered bool
	leave    func() // called once, when the Subscriber answers
}

func (w *ingressWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Write discards what the route writes after the answer (the Subscriber
// writes nothing; chi's own 404/405 text would follow a status).
func (w *ingressWriter) Write(b []byte) (int, error) {
	if !w.answered {
		w.WriteHeader(http.StatusInternalServerError)
	}
	return len(b), nil
}

func (w *ingressWriter) WriteHeader(code int) {
	if w.answered {
		return
	}
	w.answered = true
	w.leave()
	c := w.call
	switch {
	case c.refusal != nil && code == http.StatusBadRequest:
		// The Subscriber answers 400 to every error of its
		// UnmarshalMessageFunc; a size limit is 413.
		c.refusal.write(w.ResponseWriter)
	case code == http.StatusAccepted && c.ids != nil:
		h := w.Header()
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		w.ResponseWriter.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w.ResponseWriter).Encode(struct {
			IDs []string `json:"ids"`
		}{c.ids})
	default:
		if c.msg != nil {
			if a, ok := c.msg.Context().Value(answerKey{}).(*answer); ok && a.status == code {
				a.write(w.ResponseWriter)
				return
			}
		}
		writeError(w.ResponseWriter, code, "", http.StatusText(code)+": the request was not handled; nothing was published")
	}
}

// unmarshalRequest is the Subscriber's UnmarshalMessageFunc: it decodes
// the request's events (readEvents) into one transport message.
func (g *Gateway) unmarshalRequest(_ string, r *http.Request) (*message.Message, error) {
	c, ok := r.Context().Value(ingressCallKey{}).(*ingressCall)
	if !ok {
		return nil, errors.New("gateway: the ingress route was reached without the gateway's checks")
	}
	msgs, status, fe := g.readEvents(r, c.body)
	if fe != nil {
		c.refusal = &answer{status: status, field: fe.Field, message: fe.Err.Error() + "; nothing was published"}
		return nil, fe
	}
	payload, err := encodeTransport(msgs)
	if err != nil {
		c.refusal = &answer{status: http.StatusBadRequest, message: err.Error() + "; nothing was published"}
		return nil, err
	}
	c.ids = make([]string, len(msgs))
	for i, m := range msgs {
		c.ids[i] = m.UUID
	}
	c.msg = message.NewMessage(watermill.NewUUID(), payload)
	return c.msg, nil
}

// handleIngress publishes the events of one transport message and answers
// through the message: ack with 202, or nack with the failure.
func (g *Gateway) handleIngress(msg *message.Message) {
	msgs, err := decodeTransport(msg.Payload)
	if err != nil {
		g.logger.Error("Ingress transport message not handled", err, watermill.LogFields{"message_uuid": msg.UUID})
		setAnswer(msg, &answer{status: http.StatusInternalServerError, message: "the request could not be handled; nothing was published"})
		msg.Nack()
		return
	}
	if done, err := g.publish(msgs); err != nil {
		setAnswer(msg, g.publishFailure(err, done, len(msgs)))
		msg.Nack()
		return
	}
	wmhttp.SetResponseStatusCode(msg, http.StatusAccepted)
	msg.Ack()
}

// ingressTransport owns the watermill-http Subscriber of the ingress route
// and the goroutines that handle its messages.
type ingressTransport struct {
	sub      *wmhttp.Subscriber
	router   chi.Router
	messages <-chan *message.Message
	handle   func(*message.Message)
	logger   watermill.LoggerAdapter

	mu       sync.Mutex
	started  bool // dispatch runs
	closed   bool // no request enters any more
	inflight sync.WaitGroup
	workers  sync.WaitGroup // dispatch and the handleIngress goroutines
	done     chan struct{}  // closed once the Subscriber is closed and workers stopped
}

func newIngressTransport(unmarshal wmhttp.UnmarshalMessageFunc, handle func(*message.Message), logger watermill.LoggerAdapter) (*ingressTransport, error) {
	router := chi.NewRouter()
	// The address is never listened on: the gateway serves router.
	sub, err := wmhttp.NewSubscriber("", wmhttp.SubscriberConfig{Router: router, UnmarshalMessageFunc: unmarshal}, logger)
	if err != nil {
		return nil, fmt.Errorf("gateway: ingress subscriber: %w", err)
	}
	// Every message's context derives from this one; nothing reads it.
	messages, err := sub.Subscribe(context.Background(), EventsPath)
	if err != nil {
		return nil, fmt.Errorf("gateway: ingress subscribe: %w", err)
	}
	return &ingressTransport{
		sub:      sub,
		router:   router,
		messages: messages,
		handle:   handle,
		logger:   logger,
		done:     make(chan struct{}),
	}, nil
}

// enter admits a request to the Subscriber's route, starting dispatch on
// the first one. It reports false once the transport is closing. Each
// admitted request calls leave once it is past the Subscriber's channel.
func (t *ingressTransport) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if !t.started {
		t.started = true
		t.workers.Go(t.dispatch)
	}
	t.inflight.Add(1)
	return true
}

// dispatch receives the Subscriber's messages until the Subscriber closes
// its channel, and handles each on its own goroutine: a slow publish never
// holds up the other requests.
func (t *ingressTransport) dispatch() {
	for msg := range t.messages {
		t.workers.Go(func() { t.handle(msg) })
	}
}

// serve passes an admitted request to the Subscriber's route.
func (t *ingressTransport) serve(w http.ResponseWriter, r *http.Request, c *ingressCall) {
	left := false
	leave := func() {
		if !left {
			left = true
			t.inflight.Done()
		}
	}
	defer leave()
	// Without the client's cancellation: a client that hangs up must not
	// make the Subscriber answer before the publish has ended (it is not
	// cut either way).
	ctx := context.WithValue(context.WithoutCancel(r.Context()), ingressCallKey{}, c)
	iw := &ingressWriter{ResponseWriter: w, call: c, leave: leave}
	t.router.ServeHTTP(iw, r.WithContext(ctx))
	if !iw.answered {
		iw.WriteHeader(http.StatusInternalServerError)
	}
}

// close refuses new requests, waits up to timeout for the admitted ones,
// then closes the Subscriber (which closes its channel and ends dispatch)
// and waits for the handlers. If requests are still in flight at the
// timeout, the Subscriber is closed once they have finished, and close
// returns an error. Safe to call more than once.
func (t *ingressTransport) close(timeout time.Duration) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()

	go func() {
		// The Subscriber's route sends on the channel that Close closes:
		// close it only once no request is inside the route.
		t.inflight.Wait()
		if err := t.sub.Close(); err != nil {
			t.logger.Error("Closing the ingress subscriber failed", err, nil)
		}
		t.workers.Wait()
		close(t.done)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-t.done:
		return nil
	case <-timer.C:
		return fmt.Errorf("gateway: close: ingress requests still in flight after %s", timeout)
	}
}
