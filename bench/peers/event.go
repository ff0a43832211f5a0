package main

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// EventSize is the size of every event's JSON data, in bytes.
const EventSize = 221

// The fixed positions of the sequence number and the send time in an event.
const (
	seqFrom, seqTo   = 8, 18  // {"seq":"0000000042"
	sentFrom, sentTo = 28, 47 // ,"sent":"1733300000000000000"
)

// newEvent returns the 221-byte JSON data of event seq, stamped with the
// current time: {"seq":"…","sent":"…", a photo upload's fields, padding}.
func newEvent(seq int) []byte {
	b := fmt.Appendf(make([]byte, 0, EventSize),
		`{"seq":"%010d","sent":"%019d","photoId":"p-0123456789abcdef","userId":"u-4242","album":"holidays-2025","size":482133,"width":4032,"height":3024,"mime":"image/jpeg","pad":"`,
		seq, time.Now().UnixNano())
	for len(b) < EventSize-2 {
		b = append(b, 'x')
	}
	return append(b, '"', '}')
}

// parseEvent returns the sequence number and send time of an event's data.
func parseEvent(b []byte) (seq int, sent time.Time, err error) {
	if len(b) != EventSize {
		return 0, time.Time{}, fmt.Errorf("event of %d bytes, want %d", len(b), EventSize)
	}
	seq, err = strconv.Atoi(string(b[seqFrom:seqTo]))
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("event seq: %w", err)
	}
	ns, err := strconv.ParseInt(string(b[sentFrom:sentTo]), 10, 64)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("event send time: %w", err)
	}
	return seq, time.Unix(0, ns), nil
}

// tracker records which of n events one consumer group received; done is
// closed when every one has arrived at least once.
type tracker struct {
	seen     []atomic.Uint32
	distinct atomic.Int64
	dups     atomic.Int64
	bad      atomic.Int64
	done     chan struct{}
	once     sync.Once

	// latency, when not nil, gets receive - send of each first delivery of
	// an event whose seq is at least skip.
	mu      sync.Mutex
	latency []time.Duration
	skip    int
}

func newTracker(n int) *tracker {
	return &tracker{seen: make([]atomic.Uint32, n), done: make(chan struct{})}
}

// record is called by a consumer for each delivery.
func (t *tracker) record(data []byte) {
	now := time.Now()
	seq, sent, err := parseEvent(data)
	if err != nil || seq < 0 || seq >= len(t.seen) {
		t.bad.Add(1)
		return
	}
	if t.seen[seq].Add(1) > 1 {
		t.dups.Add(1)
		return
	}
	if t.latency != nil && seq >= t.skip {
		t.mu.Lock()
		t.latency = append(t.latency, now.Sub(sent))
		t.mu.Unlock()
	}
	if t.distinct.Add(1) == int64(len(t.seen)) {
		t.once.Do(func() { close(t.done) })
	}
}

// missing returns how many events have not arrived.
func (t *tracker) missing() int { return len(t.seen) - int(t.distinct.Load()) }
