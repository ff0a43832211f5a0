package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
)

const (
	// RoomsParam is the query parameter of the stream endpoint that lists
	// the rooms to join, comma-separated ("?rooms=lobby,photos"); it may
	// also be repeated.
	RoomsParam = "rooms"
	// LastEventIDParam is the query parameter that stands for the
	// Last-Event-ID header, for clients that cannot set headers on their
	// first connection. The header wins when both are present.
	LastEventIDParam = "lastEventId"
	// GapEvent is the SSE event type of the message that says events were
	// lost: the Last-Event-ID a browser resumed from is older than the
	// oldest event the push stream still holds. Its data is a [Gap].
	GapEvent = "gap"
	// TokenExpiredEvent is the SSE event type of the last message of a
	// stream whose token expired. Its data is a [TokenExpired]. The browser
	// should close its EventSource (which would reconnect with the expired
	// token and get 401), get a new token, and connect again with the
	// lastEventId it carries.
	TokenExpiredEvent = "token-expired"
)

// TokenExpired is the data of a "token-expired" SSE message (JSON).
type TokenExpired struct {
	// Expired is when the token stopped being accepted (exp plus leeway).
	Expired time.Time `json:"expired"`
	// LastEventID is the position to resume from with the new token
	// (Last-Event-ID header, or the lastEventId query parameter).
	LastEventID string `json:"lastEventId"`
	// Message says what happened, for people.
	Message string `json:"message"`
}

// Gap is the data of a "gap" SSE message (JSON).
type Gap struct {
	// LastEventID is the position the browser resumed from.
	LastEventID string `json:"lastEventId"`
	// Since is when that position was written: events after it may be lost.
	Since time.Time `json:"since"`
	// OldestID is the oldest entry the push stream still holds (empty if
	// it holds none); events from it on are delivered.
	OldestID string `json:"oldestId,omitempty"`
	// Message says what happened, for people.
	Message string `json:"message"`
}

// serveStream is GET /v1/stream. See docs/gateway.md.
func (g *Gateway) serveStream(w http.ResponseWriter, r *http.Request) {
	p, err := g.auth.Authenticate(r)
	if err != nil {
		writeAuthError(w, err)
		return
	}
	if !g.hub.isRunning() {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "", "the gateway is not following the event stream (starting or shutting down): retry shortly")
		return
	}
	allowed, forbidden := resolveRooms(p, parseRooms(r.URL.Query()[RoomsParam]))

	last, resume, field, err := lastEventID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, field, err.Error())
		return
	}
	ctx := r.Context()
	ictx, cancel := context.WithTimeout(ctx, g.cfg.PublishTimeout)
	info, err := streamInfoOf(ictx, g.bus.Client(), g.bus.Config().PushKey())
	cancel()
	if err != nil {
		g.logger.Error("Cannot read the push stream for a new stream", err, nil)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "", "the event store is unavailable: retry shortly")
		return
	}
	var gap *Gap
	switch {
	case !resume:
		last = info.lastGenerated // live from now on
	case info.lastGenerated.less(last):
		gap = &Gap{
			LastEventID: last.String(), Since: last.time(),
			Message: fmt.Sprintf("Last-Event-ID %s is ahead of the event stream (whose last id is %s): the stream was reset, or the id is not from this service; events may have been lost", last, info.lastGenerated),
		}
		last = info.lastGenerated
	case info.lostAfter(last):
		gap = &Gap{
			LastEventID: last.String(), Since: last.time(),
			Message: fmt.Sprintf("events after %s (%s) may have been lost: the stream no longer holds them", last, last.time().Format(time.RFC3339Nano)),
		}
		if info.length > 0 {
			gap.OldestID = info.first.String()
		}
	}

	if resume {
		g.metrics.resumed(gap != nil)
	}
	sse, err := newSSEWriter(w)
	if err != nil {
		g.logger.Error("Cannot stream to this client", err, nil)
		writeError(w, http.StatusInternalServerError, "", "the server cannot stream responses")
		return
	}
	c := newClient(p, allowed)
	s := &stream{g: g, sse: sse, c: c, q: newSendQueue(g.cfg.ClientBuffer), last: last}
	s.run(ctx, forbidden, gap)
}

// stream is one open SSE response. Its methods run on the handler's
// goroutine only.
type stream struct {
	g         *Gateway
	sse       *sseWriter
	c         *client
	q         *sendQueue // live events, queued by the hub
	last      streamID   // every wanted entry up to last has been written
	deadlines bool       // the ResponseWriter supports write deadlines
}

func (s *stream) run(ctx context.Context, forbidden []string, gap *Gap) {
	s.deadlines = true
	hello := fmt.Sprintf("eventbus: user %q, rooms %s", s.c.Principal().User, quoteList(s.c.Rooms()))
	if len(forbidden) > 0 {
		hello += fmt.Sprintf(", forbidden rooms (not joined) %s", quoteList(forbidden))
	}
	if err := s.write(func() error { return s.sse.WriteComment(hello) }); err != nil {
		return
	}
	if err := s.write(func() error { return s.sse.WriteRetry(s.g.retryMillis(0)) }); err != nil {
		return
	}
	if exp := s.c.principal.Expires; !exp.IsZero() {
		// The token's end ends the stream, wherever it is (replay or live).
		t := time.AfterFunc(time.Until(exp), func() { s.c.Close(errTokenExpired) })
		defer t.Stop()
	}
	if gap != nil {
		data, _ := json.Marshal(gap) // a Gap always marshals
		if err := s.write(func() error { return s.sse.WriteEvent("", GapEvent, data) }); err != nil {
			return
		}
	}
	// Catch up from the stream before registering, so that a long backlog
	// does not fill the live buffer; then register, and read what was
	// added meanwhile: anything newer comes through the hub. Live events
	// already written by the replay (id <= s.last) are dropped.
	if err := s.replay(ctx); err != nil {
		s.end(err)
		return
	}
	if !s.g.hub.add(s.c, s.q) {
		s.end(ErrGatewayClosed)
		return
	}
	defer s.g.hub.remove(s.c)
	if err := s.replay(ctx); err != nil {
		s.end(err)
		return
	}
	s.end(s.live(ctx))
}

// replay writes the entries after s.last that the client wants, page by
// page, until a page comes back short (the end of the stream).
func (s *stream) replay(ctx context.Context) error {
	key := s.g.bus.Config().PushKey()
	page := s.g.cfg.ReplayPage
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.c.Done():
			return s.c.Err()
		default:
		}
		entries, err := s.g.bus.Client().XRangeN(ctx, key, "("+s.last.String(), "+", int64(page)).Result()
		if err != nil {
			return fmt.Errorf("replay: XRANGE %s: %w", key, err)
		}
		for _, x := range entries {
			sid, err := parseStreamID(x.ID)
			if err != nil {
				continue
			}
			ev, err := decodePushEntry(x)
			if err == nil && s.c.Wants(ev.room, ev.user, ev.broadcast) {
				if err := s.write(func() error { return s.sse.WriteEvent(ev.id, ev.typ, ev.data) }); err != nil {
					return err
				}
				s.g.metrics.delivered(1)
			}
			s.last = sid
		}
		if len(entries) < page {
			return nil
		}
	}
}

// live writes the events the hub queues for the client, and heartbeats,
// until the client is closed, the request ends or a write fails.
//
// Each wake-up takes everything queued at once and writes it with a single
// flush: under load a stream that was not scheduled for a while catches up
// in one write (and one syscall per few KiB) instead of one write and one
// flush per event, so the cost per event falls as the load rises.
func (s *stream) live(ctx context.Context) error {
	hb := time.NewTicker(s.g.cfg.HeartbeatInterval)
	defer hb.Stop()
	var frames []*frame // reused between wake-ups
	for {
		select {
		case <-s.q.ready:
			frames = s.q.take(frames)
			if err := s.writeFrames(frames); err != nil {
				return err
			}
		case <-hb.C:
			// Every entry up to pos has been offered to the client; if its
			// queue is empty (checked after reading pos) it has them all,
			// and its Last-Event-ID may move up to pos.
			if pos := s.g.hub.position(); s.last.less(pos) && s.q.len() == 0 {
				if err := s.write(func() error { return s.sse.WriteID(pos.String()) }); err != nil {
					return err
				}
				s.last = pos
			}
			if err := s.write(func() error { return s.sse.WriteComment("ping") }); err != nil {
				return err
			}
		case <-s.c.Done():
			return s.c.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// writeFrames writes the frames after s.last (those up to it were written
// by the replay) and flushes once.
func (s *stream) writeFrames(frames []*frame) error {
	return s.write(func() error {
		n := 0
		for _, f := range frames {
			if !s.last.less(f.id) {
				continue
			}
			if err := s.sse.writeFrame(f.msg); err != nil {
				return err
			}
			s.last = f.id
			n++
		}
		if n == 0 {
			return nil
		}
		s.g.metrics.delivered(n)
		return s.sse.flushNow()
	})
}

// write sets the write deadline and runs fn.
func (s *stream) write(fn func() error) error {
	if s.deadlines {
		if err := s.sse.SetWriteDeadline(time.Now().Add(s.g.cfg.WriteTimeout)); errors.Is(err, http.ErrNotSupported) {
			s.deadlines = false
		}
	}
	if err := fn(); err != nil {
		return fmt.Errorf("%w: %w", errStreamWrite, err)
	}
	return nil
}

// end closes the client and, when the browser is still there, tells it why
// the stream ends; the browser reconnects and resumes from its
// Last-Event-ID.
func (s *stream) end(reason error) {
	s.c.Close(reason)
	s.g.metrics.closed(reason)
	var msg string
	switch {
	case errors.Is(reason, errSlowClient):
		msg = "disconnected: this client fell too far behind; reconnect to resume from Last-Event-ID"
	case errors.Is(reason, ErrGatewayClosed):
		// Spread the reconnections of this replica's browsers.
		if err := s.write(func() error { return s.sse.WriteRetry(s.g.retryMillis(s.g.cfg.ShutdownRetry)) }); err != nil {
			return
		}
		msg = "disconnected: the gateway is shutting down; reconnect to resume"
	case errors.Is(reason, errTokenExpired):
		exp := s.c.principal.Expires
		data, _ := json.Marshal(TokenExpired{
			Expired: exp.UTC(), LastEventID: s.last.String(),
			Message: "the token of this stream expired at " + exp.UTC().Format(time.RFC3339) + ": get a new token and reconnect with lastEventId to resume",
		}) // a TokenExpired always marshals
		_ = s.write(func() error { return s.sse.WriteEvent("", TokenExpiredEvent, data) })
		return
	case errors.Is(reason, errPushStreamGap):
		msg = "disconnected: the gateway lost its place in the event stream; reconnect to resume"
	case errors.Is(reason, context.Canceled), errors.Is(reason, errStreamWrite), reason == nil:
		return // the browser went away
	default:
		s.g.logger.Info("Stream ended", watermill.LogFields{"user": s.c.Principal().User, "reason": reason.Error()})
		msg = "disconnected: server error; reconnect to resume"
	}
	_ = s.write(func() error { return s.sse.WriteComment(msg) })
}

// parseRooms splits the rooms parameters on commas, trimming spaces and
// dropping empty names.
func parseRooms(params []string) []string {
	var rooms []string
	for _, p := range params {
		for r := range strings.SplitSeq(p, ",") {
			if r = strings.TrimSpace(r); r != "" {
				rooms = append(rooms, r)
			}
		}
	}
	return rooms
}

// lastEventID returns the resume position from the Last-Event-ID header or
// the lastEventId query parameter; resume is false when neither is set.
func lastEventID(r *http.Request) (id streamID, resume bool, field string, err error) {
	field = "Last-Event-ID"
	v := strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	if v == "" {
		field = LastEventIDParam
		v = strings.TrimSpace(r.URL.Query().Get(LastEventIDParam))
	}
	if v == "" {
		return streamID{}, false, "", nil
	}
	id, err = parseStreamID(v)
	if err != nil {
		return streamID{}, false, field, fmt.Errorf("%s: %w (the id of an event this stream sent)", field, err)
	}
	return id, true, "", nil
}

func quoteList(s []string) string {
	if s == nil {
		return "[]"
	}
	b, _ := json.Marshal(s) // a []string always marshals
	return string(b)
}

// errStreamWrite marks a failed write to the browser: it has gone away or
// stopped reading, and there is nobody left to tell.
var errStreamWrite = errors.New("write to the browser failed")

// retryMillis draws a "retry:" value in milliseconds: uniformly from
// [Retry, Retry+spread), where spread 0 stands for Retry itself (the jitter
// of a new stream: [Retry, 2*Retry)).
func (g *Gateway) retryMillis(spread time.Duration) int {
	if spread <= 0 {
		spread = g.cfg.Retry
	}
	return int((g.cfg.Retry + rand.N(spread)).Milliseconds())
}
