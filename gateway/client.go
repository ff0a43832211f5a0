package gateway

import (
	"sync"
	"sync/atomic"
)

// DefaultClientBuffer is the send buffer size NewClient uses when given a
// size below 1, and the default of Config.ClientBuffer: how many events may
// wait for one browser before it is disconnected. 256 is a full XREAD batch
// of the push-stream reader, and at 1,000 events/s of which a third reach
// every browser it is about 0.7 s of backlog.
const DefaultClientBuffer = 256

// OutEvent is one event on its way to a browser, in the shape the SSE
// writer loop passes to [SSEWriter.WriteEvent].
type OutEvent struct {
	// ID becomes the SSE id field (the browser's Last-Event-ID).
	ID string
	// Type becomes the SSE event field.
	Type string
	// Data becomes the SSE data lines.
	Data []byte
}

// Client is one browser connection: its principal, the rooms it listens to,
// and a bounded buffer of events waiting for its writer loop.
//
// Send, Wants, Done, Err, Overflowed and Close are safe for concurrent use:
// many dispatching goroutines may Send while the writer loop reads Events
// and any goroutine may Close. The Events channel is never closed (so a
// late Send can never panic); the writer loop selects on Events and Done:
//
//	for {
//		select {
//		case ev := <-c.Events():
//			if err := sse.WriteEvent(ev.ID, ev.Type, ev.Data); err != nil {
//				c.Close(err)
//				return
//			}
//		case <-c.Done():
//			return // c.Err() says why
//		case <-r.Context().Done():
//			c.Close(nil)
//			return
//		}
//	}
type Client struct {
	principal Principal
	rooms     map[string]struct{}
	roomList  []string

	send chan OutEvent
	done chan struct{}

	closeOnce  sync.Once
	mu         sync.Mutex
	err        error // guarded by mu, set once before done is closed
	overflowed atomic.Bool
}

// NewClient returns a client for principal p listening to the requested
// rooms. Rooms p may not join (see [ResolveRooms]) are dropped here, so a
// client never receives a room's events without permission; call
// ResolveRooms first to tell the user which rooms were refused. buffer is
// the number of events that may wait for the writer loop; below 1 means
// DefaultClientBuffer.
func NewClient(p Principal, requested []string, buffer int) *Client {
	if buffer < 1 {
		buffer = DefaultClientBuffer
	}
	return newClient(p, requested, buffer)
}

// newClient is NewClient with the channel's capacity as given: the
// gateway's own streams take their events from a sendQueue, and make their
// Client with buffer 0 so that no channel buffer sits unused.
func newClient(p Principal, requested []string, buffer int) *Client {
	allowed, _ := ResolveRooms(p, requested)
	c := &Client{
		principal: Principal{User: p.User, Rooms: append([]string(nil), p.Rooms...), Expires: p.Expires},
		rooms:     make(map[string]struct{}, len(allowed)),
		roomList:  allowed,
		send:      make(chan OutEvent, buffer),
		done:      make(chan struct{}),
	}
	for _, r := range allowed {
		c.rooms[r] = struct{}{}
	}
	return c
}

// ResolveRooms splits the requested rooms into those p may join and those it
// may not, each in request order without duplicates. The empty room name is
// always forbidden.
func ResolveRooms(p Principal, requested []string) (allowed, forbidden []string) {
	seen := make(map[string]struct{}, len(requested))
	for _, r := range requested {
		if _, dup := seen[r]; dup {
			continue
		}
		seen[r] = struct{}{}
		if p.MayJoin(r) {
			allowed = append(allowed, r)
		} else {
			forbidden = append(forbidden, r)
		}
	}
	return allowed, forbidden
}

// Principal returns the client's principal.
func (c *Client) Principal() Principal {
	return Principal{User: c.principal.User, Rooms: append([]string(nil), c.principal.Rooms...), Expires: c.principal.Expires}
}

// Rooms returns the rooms the client listens to: those it asked for and may
// join, in request order.
func (c *Client) Rooms() []string {
	return append([]string(nil), c.roomList...)
}

// Wants reports whether an event with the given addressing attributes is for
// this client: true iff broadcast is set, or user is non-empty and equals
// the client's user, or room is non-empty and is one of the client's Rooms.
// The attributes are alternatives, not a conjunction: an event with both
// room and user set reaches the room's members and the user.
func (c *Client) Wants(room, user string, broadcast bool) bool {
	if broadcast {
		return true
	}
	if user != "" && user == c.principal.User {
		return true
	}
	if room != "" {
		_, ok := c.rooms[room]
		return ok
	}
	return false
}

// Send queues ev for the writer loop without ever blocking. It returns false
// if the client is closed, or if the buffer is full: then the client is
// marked as overflowed and closed with [ErrSlowClient], since it has missed
// an event and must reconnect (resuming from Last-Event-ID) rather than
// silently skip it.
func (c *Client) Send(ev OutEvent) bool {
	select {
	case <-c.done:
		return false
	default:
	}
	select {
	case c.send <- ev:
		return true
	default:
		c.overflow()
		return false
	}
}

// overflow marks c as overflowed and closes it with ErrSlowClient.
func (c *Client) overflow() {
	c.overflowed.Store(true)
	c.Close(ErrSlowClient)
}

// Events returns the channel the writer loop reads queued events from. It
// is never closed; select on it together with Done.
func (c *Client) Events() <-chan OutEvent {
	return c.send
}

// Done returns a channel closed when the client is closed.
func (c *Client) Done() <-chan struct{} {
	return c.done
}

// Err returns nil while the client is open and, once Done is closed, the
// reason given to the first Close ([ErrClientClosed] if that was nil, or
// [ErrSlowClient] after an overflow).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Overflowed reports whether a Send ever found the buffer full.
func (c *Client) Overflowed() bool {
	return c.overflowed.Load()
}

// Close closes the client with reason (nil means [ErrClientClosed]). Only
// the first call has an effect; later calls, from any goroutine, do nothing.
// Events still buffered are dropped by the writer loop's return.
func (c *Client) Close(reason error) {
	c.closeOnce.Do(func() {
		if reason == nil {
			reason = ErrClientClosed
		}
		c.mu.Lock()
		c.err = reason
		c.mu.Unlock()
		close(c.done)
	})
}
