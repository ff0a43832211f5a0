package bus

import (
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
)

// held's bookkeeping, without Redis: what is held, what is acked, and that
// a failed flush puts its acks back in front of the newer ones.
func TestHeld(t *testing.T) {
	a1, a2, b1 := entryRef{"s:a", "1-0"}, entryRef{"s:a", "2-0"}, entryRef{"s:b", "1-0"}
	for _, tc := range []struct {
		name          string
		run           func(h *held)
		inflight      int
		ackIDs, ackSt int
		holds         []entryRef
		notHolds      []entryRef
		byStream      map[string][]string
	}{
		{
			name:     "added entries are held and in flight",
			run:      func(h *held) { h.add(a1, a2, b1) },
			inflight: 3, holds: []entryRef{a1, a2, b1},
			byStream: map[string][]string{"s:a": {"1-0", "2-0"}, "s:b": {"1-0"}},
		},
		{
			name:     "done with ack: still held until the ack is taken",
			run:      func(h *held) { h.add(a1, b1); h.done(a1, true) },
			inflight: 1, ackIDs: 1, ackSt: 1, holds: []entryRef{a1, b1},
			byStream: map[string][]string{"s:a": {"1-0"}, "s:b": {"1-0"}},
		},
		{
			name:     "done without ack (nacked, stopping): no longer held",
			run:      func(h *held) { h.add(a1, b1); h.done(a1, false) },
			inflight: 1, holds: []entryRef{b1}, notHolds: []entryRef{a1},
			byStream: map[string][]string{"s:b": {"1-0"}},
		},
		{
			name: "taken acks are no longer held",
			run: func(h *held) {
				h.add(a1, a2)
				h.done(a1, true)
				h.done(a2, true)
				if acks, n := h.takeAcks(); n != 2 || !slices.Equal(acks["s:a"], []string{"1-0", "2-0"}) {
					panic("takeAcks returned the wrong acks")
				}
			},
			notHolds: []entryRef{a1, a2}, byStream: map[string][]string{},
		},
		{
			name: "restored acks go back in front of newer ones",
			run: func(h *held) {
				h.add(a1, a2, b1)
				h.done(a1, true)
				acks, n := h.takeAcks()
				h.done(a2, true)
				h.done(b1, true)
				h.restoreAcks(acks, n)
			},
			ackIDs: 3, ackSt: 2, holds: []entryRef{a1, a2, b1},
			byStream: map[string][]string{"s:a": {"1-0", "2-0"}, "s:b": {"1-0"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHeld()
			tc.run(h)
			if got := h.inflightCount(); got != tc.inflight {
				t.Errorf("inflight = %d, want %d", got, tc.inflight)
			}
			if ids, streams := h.ackLoad(); ids != tc.ackIDs || streams != tc.ackSt {
				t.Errorf("ackLoad = %d ids over %d streams, want %d over %d", ids, streams, tc.ackIDs, tc.ackSt)
			}
			for _, r := range tc.holds {
				if !h.holds(r) {
					t.Errorf("holds(%v) = false", r)
				}
			}
			for _, r := range tc.notHolds {
				if h.holds(r) {
					t.Errorf("holds(%v) = true", r)
				}
			}
			got := h.byStream()
			for k := range got {
				slices.Sort(got[k])
			}
			if !maps.EqualFunc(got, tc.byStream, slices.Equal[[]string]) {
				t.Errorf("byStream = %v, want %v", got, tc.byStream)
			}
		})
	}
}

// An empty buffer gives nil, and done reports what is left in flight.
func TestHeldEmptyAndCounts(t *testing.T) {
	h := newHeld()
	if acks, n := h.takeAcks(); acks != nil || n != 0 {
		t.Fatalf("takeAcks on empty = %v, %d", acks, n)
	}
	h.add(entryRef{"s", "1-0"}, entryRef{"s", "2-0"})
	if left := h.done(entryRef{"s", "1-0"}, true); left != 1 {
		t.Fatalf("done left %d in flight, want 1", left)
	}
}

// Concurrent dispatchers and a flushing reader (run with -race).
func TestHeldConcurrent(t *testing.T) {
	h := newHeld()
	var wg sync.WaitGroup
	const n = 1000
	refs := make([]entryRef, n)
	for i := range refs {
		refs[i] = entryRef{"s", strconv.Itoa(i) + "-0"}
	}
	h.add(refs...)
	acked := 0
	var mu sync.Mutex
	for i := range 4 {
		wg.Go(func() {
			for j := i; j < n; j += 4 {
				h.done(refs[j], true)
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			if _, k := h.takeAcks(); k > 0 {
				mu.Lock()
				acked += k
				mu.Unlock()
			}
		}
	})
	wg.Wait()
	if h.inflightCount() != 0 {
		t.Fatalf("in flight after every done: %d", h.inflightCount())
	}
	_, k := h.takeAcks()
	if acked+k != n {
		t.Fatalf("acks taken = %d, want %d", acked+k, n)
	}
}
