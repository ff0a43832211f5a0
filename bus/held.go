package bus

import "sync"

// held is what one subscription holds in its consumer group: entries in
// flight (handed to the dispatcher and not yet done) and acks buffered
// (done, their XACK not yet written). Both must stay covered by the
// keepalive and must not be claimed from under the subscription; the acks
// are written in batches (flushAcks). It knows nothing of Redis. Safe for
// concurrent use.
type held struct {
	mu       sync.Mutex
	inflight map[entryRef]struct{}
	acks     map[string][]string // stream -> ids, in the order they were done
	ackIDs   int                 // ids in acks
}

func newHeld() *held {
	return &held{inflight: make(map[entryRef]struct{}), acks: make(map[string][]string)}
}

// add records refs as in flight.
func (h *held) add(refs ...entryRef) {
	h.mu.Lock()
	for _, r := range refs {
		h.inflight[r] = struct{}{}
	}
	h.mu.Unlock()
}

// done removes ref from the in-flight set and, when ack is true, buffers its
// ack. It returns how many entries are still in flight.
func (h *held) done(ref entryRef, ack bool) (inflight int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.inflight, ref)
	if ack {
		h.acks[ref.stream] = append(h.acks[ref.stream], ref.id)
		h.ackIDs++
	}
	return len(h.inflight)
}

// holds reports whether ref is in flight or waits for its ack.
func (h *held) holds(ref entryRef) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.inflight[ref]; ok {
		return true
	}
	for _, id := range h.acks[ref.stream] {
		if id == ref.id {
			return true
		}
	}
	return false
}

func (h *held) inflightCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.inflight)
}

// ackLoad returns how many acks are buffered, over how many streams.
func (h *held) ackLoad() (ids, streams int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ackIDs, len(h.acks)
}

// takeAcks returns the buffered acks and empties the buffer (nil when it is
// empty). What could not be written goes back with restoreAcks.
func (h *held) takeAcks() (acks map[string][]string, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.acks) == 0 {
		return nil, 0
	}
	acks, n = h.acks, h.ackIDs
	h.acks, h.ackIDs = make(map[string][]string, len(acks)), 0
	return acks, n
}

// restoreAcks puts acks that takeAcks returned back in front of those
// buffered since (XACK is idempotent, so a partial write does no harm).
func (h *held) restoreAcks(acks map[string][]string, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for stream, ids := range acks {
		h.acks[stream] = append(ids, h.acks[stream]...)
	}
	h.ackIDs += n
}

// byStream returns every id held, in flight or waiting for its ack, by
// stream (for the keepalive and for re-creating a destroyed group).
func (h *held) byStream() map[string][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string][]string)
	for ref := range h.inflight {
		out[ref.stream] = append(out[ref.stream], ref.id)
	}
	for stream, ids := range h.acks {
		out[stream] = append(out[stream], ids...)
	}
	return out
}
