package gateway

import "sync"

// client is one browser stream: its principal and the rooms it listens to,
// which the push-stream reader matches each event against ([client.Wants]),
// and the reason it was closed. Its events wait in the stream's sendQueue.
//
// Wants, Done, Err and Close are safe for concurrent use.
type client struct {
	principal Principal
	rooms     map[string]struct{}
	roomList  []string

	done chan struct{}

	closeOnce sync.Once
	mu        sync.Mutex
	err       error // guarded by mu, set once before done is closed
}

// newClient returns a client for principal p listening to the requested
// rooms. Rooms p may not join (see [resolveRooms]) are dropped here, so a
// client never receives a room's events without permission; call
// resolveRooms first to tell the user which rooms were refused.
func newClient(p Principal, requested []string) *client {
	allowed, _ := resolveRooms(p, requested)
	c := &client{
		principal: Principal{User: p.User, Rooms: append([]string(nil), p.Rooms...), Expires: p.Expires},
		rooms:     make(map[string]struct{}, len(allowed)),
		roomList:  allowed,
		done:      make(chan struct{}),
	}
	for _, r := range allowed {
		c.rooms[r] = struct{}{}
	}
	return c
}

// resolveRooms splits the requested rooms into those p may join and those it
// may not, each in request order without duplicates. The empty room name is
// always forbidden.
func resolveRooms(p Principal, requested []string) (allowed, forbidden []string) {
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
func (c *client) Principal() Principal {
	return Principal{User: c.principal.User, Rooms: append([]string(nil), c.principal.Rooms...), Expires: c.principal.Expires}
}

// Rooms returns the rooms the client listens to: those it asked for and may
// join, in request order.
func (c *client) Rooms() []string {
	return append([]string(nil), c.roomList...)
}

// Wants reports whether an event with the given addressing attributes is for
// this client: true iff broadcast is set, or user is non-empty and equals
// the client's user, or room is non-empty and is one of the client's Rooms.
// The attributes are alternatives, not a conjunction: an event with both
// room and user set reaches the room's members and the user.
func (c *client) Wants(room, user string, broadcast bool) bool {
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

// overflow closes c with errSlowClient: its queue was full, it has missed
// an event and must reconnect (resuming from Last-Event-ID) rather than
// silently skip it.
func (c *client) overflow() {
	c.Close(errSlowClient)
}

// Done returns a channel closed when the client is closed.
func (c *client) Done() <-chan struct{} {
	return c.done
}

// Err returns nil while the client is open and, once Done is closed, the
// reason given to the first Close ([errClientClosed] if that was nil, or
// [errSlowClient] after an overflow).
func (c *client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the client with reason (nil means [errClientClosed]). Only
// the first call has an effect; later calls, from any goroutine, do nothing.
// Events still queued are dropped by the writer loop's return.
func (c *client) Close(reason error) {
	c.closeOnce.Do(func() {
		if reason == nil {
			reason = errClientClosed
		}
		c.mu.Lock()
		c.err = reason
		c.mu.Unlock()
		close(c.done)
	})
}
