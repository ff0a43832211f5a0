package observe

import (
	"sync"
	"time"

	"github.com/shared-infra/eventbus/middleware"
)

// WindowStats are the counts of a sliding window and the error rate over it.
type WindowStats struct {
	// Seconds is the span the counts cover: the configured window, or less
	// while the observer is younger than the window.
	Seconds float64 `json:"seconds"`
	// Received counts deliveries handed to handlers in the window.
	Received uint64 `json:"received"`
	// Failed counts handler attempts that failed in the window (every failed
	// retry counts).
	Failed uint64 `json:"failed"`
	// ErrorRate is Failed / Received, 0 when nothing was received. It exceeds
	// 1 when deliveries fail on several attempts.
	ErrorRate float64 `json:"errorRate"`
}

// counts are the cumulative counters one window is computed from.
type counts struct{ received, failed uint64 }

type sample struct {
	t        time.Time
	total    counts
	handlers map[string]counts
}

// errorWindow is a ring of per-second samples of the cumulative counters:
// the window's counts are the live counters minus the oldest sample still in
// the window. Safe for concurrent use.
type errorWindow struct {
	window time.Duration

	mu    sync.Mutex
	ring  []sample // oldest first after rotation: ring[(next+i)%len]
	next  int
	count int
}

func newErrorWindow(window time.Duration) *errorWindow {
	n := int((window+time.Second-1)/time.Second) + 1
	return &errorWindow{window: window, ring: make([]sample, n)}
}

func countsOf(stats map[string]middleware.HandlerStats) (counts, map[string]counts) {
	var total counts
	per := make(map[string]counts, len(stats))
	for name, s := range stats {
		c := counts{received: s.Received, failed: s.Failed}
		per[name] = c
		total.received += c.received
		total.failed += c.failed
	}
	return total, per
}

// add records the counters as they were at t.
func (w *errorWindow) add(t time.Time, stats map[string]middleware.HandlerStats) {
	total, per := countsOf(stats)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ring[w.next] = sample{t: t, total: total, handlers: per}
	w.next = (w.next + 1) % len(w.ring)
	w.count = min(w.count+1, len(w.ring))
}

// base returns the oldest sample taken at or after now-window; when every
// sample is older (sampling stalled), the newest one. ok is false with no
// sample at all.
func (w *errorWindow) base(now time.Time) (sample, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.count == 0 {
		return sample{}, false
	}
	from := now.Add(-w.window)
	oldest := (w.next - w.count + len(w.ring)) % len(w.ring)
	for i := range w.count {
		s := w.ring[(oldest+i)%len(w.ring)]
		if !s.t.Before(from) {
			return s, true
		}
	}
	return w.ring[(w.next-1+len(w.ring))%len(w.ring)], true
}

// compute returns the window over everything and per handler, given the
// live counters at now.
func (w *errorWindow) compute(now time.Time, stats map[string]middleware.HandlerStats) (WindowStats, map[string]WindowStats) {
	total, per := countsOf(stats)
	b, ok := w.base(now)
	secs := 0.0
	if ok {
		secs = max(0, now.Sub(b.t).Seconds())
	}
	out := make(map[string]WindowStats, len(per))
	for name, c := range per {
		out[name] = windowOf(secs, c, b.handlers[name])
	}
	return windowOf(secs, total, b.total), out
}

func windowOf(secs float64, now, base counts) WindowStats {
	ws := WindowStats{Seconds: secs, Received: sub(now.received, base.received), Failed: sub(now.failed, base.failed)}
	if ws.Received > 0 {
		ws.ErrorRate = float64(ws.Failed) / float64(ws.Received)
	}
	return ws
}

// sub is a saturating a-b (counters never go back, but stay safe if they do).
func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
