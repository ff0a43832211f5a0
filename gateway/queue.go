package gateway

import "sync"

// frame is one push-stream event rendered once as an SSE message ("id:",
// "event:" and "data:" lines and the blank line). The reader makes one frame
// per event and queues the same frame, read-only, for every stream that
// wants it, so neither encoding nor memory grows with the number of
// streams.
type frame struct {
	id  streamID
	msg []byte
}

// sendQueue is the bounded queue of frames between the push-stream reader
// and one stream's writer loop. The reader appends a whole XREAD batch's
// worth of frames for the stream under one lock and wakes the writer; the
// writer takes everything queued at once, writes it with one flush, and
// hands its emptied slice back for reuse, so in the steady state neither
// side allocates. Memory is the backlog only (a pointer per queued frame,
// at most limit), not a preallocated buffer per stream.
//
// push and take are safe for concurrent use by one pusher and one taker.
type sendQueue struct {
	limit int
	ready chan struct{} // capacity 1: a signal that frames are queued

	mu    sync.Mutex
	items []*frame // guarded by mu
}

func newSendQueue(limit int) *sendQueue {
	return &sendQueue{limit: limit, ready: make(chan struct{}, 1)}
}

// push queues the frames of batch that c wants and wakes the writer. It
// returns false, having queued nothing more, when they would take the queue
// beyond its limit: the stream has fallen too far behind.
func (q *sendQueue) push(c *client, batch []pushFrame) bool {
	q.mu.Lock()
	n := len(q.items)
	for i := range batch {
		e := &batch[i]
		if !c.Wants(e.room, e.user, e.broadcast) {
			continue
		}
		if len(q.items) == q.limit {
			clear(q.items[n:])
			q.items = q.items[:n]
			q.mu.Unlock()
			return false
		}
		q.items = append(q.items, e.frame)
	}
	added := len(q.items) > n
	q.mu.Unlock()
	if added {
		select {
		case q.ready <- struct{}{}:
		default: // already signalled; the writer takes everything
		}
	}
	return true
}

// take returns every queued frame, oldest first, and leaves the queue
// empty, reusing spare (a slice an earlier take returned, emptied by the
// caller) as the queue's next backing array.
func (q *sendQueue) take(spare []*frame) []*frame {
	clear(spare[:cap(spare)]) // drop references to frames already written
	q.mu.Lock()
	out := q.items
	q.items = spare[:0]
	q.mu.Unlock()
	return out
}

// len returns how many frames are queued.
func (q *sendQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// pushFrame is a frame with the addressing the reader matches against each
// stream's Client.
type pushFrame struct {
	frame     *frame
	room      string
	user      string
	broadcast bool
}
