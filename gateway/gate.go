package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// The ingress path, in the request's own goroutine: serveEvents checks
// (credentials, rate, body size), readEvents decodes and checks the
// CloudEvents once, publish writes them through the bus publisher, and the
// answer is written from the result — 202 {"ids":[...]} or an ErrorBody.
//
// Until issue 18 a request went through a watermill-http Subscriber mounted
// on a private chi router: the parsed events were gob-encoded into one
// transport message, sent on the Subscriber's channel, decoded again by a
// handler goroutine, published, and the answer travelled back as the
// message's status metadata, a context value and a response-writer wrapper.
// That was three goroutines and two serialisations per request for nothing
// the Subscriber added (it only turned ack/nack into a status). The
// watermill-http contract the ingress keeps is on its edges: a client
// publishes with NewIngressPublisher (a watermill-http Publisher), and
// UnmarshalCloudEvent is a watermill-http UnmarshalMessageFunc for anyone who
// mounts a Subscriber of their own. docs/architecture.md has the reason.

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

// writeAccepted answers 202 with the ids of the events published.
func writeAccepted(w http.ResponseWriter, ids []string) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(struct {
		IDs []string `json:"ids"`
	}{ids})
}

// ingressGate counts the ingress requests being published, so that Close
// refuses new ones and waits for those in flight.
type ingressGate struct {
	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
}

// enter admits a request; false once the gateway is closing. An admitted
// request calls leave when it has answered.
func (t *ingressGate) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.inflight.Add(1)
	return true
}

func (t *ingressGate) leave() { t.inflight.Done() }

// close refuses new requests and waits up to timeout for the admitted
// ones; it returns an error if some are still in flight then. Safe to call
// more than once.
func (t *ingressGate) close(timeout time.Duration) error {
	t.mu.Lock()
	already := t.closed
	t.closed = true
	t.mu.Unlock()
	if already {
		return nil
	}
	done := make(chan struct{})
	go func() {
		t.inflight.Wait()
		close(done)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-done:
		return nil
	case <-timer.C:
		return fmt.Errorf("gateway: close: ingress requests still in flight after %s", timeout)
	}
}
