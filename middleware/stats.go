package middleware

import (
	"errors"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// ErrFiltered is returned by a filter to say the event was deliberately not
// processed; Stats counts it as filtered, and the router acks it.
var ErrFiltered = errors.New("filtered out")

// Stats counts, per handler, what happened to the events it received. Read
// it with Snapshot. The zero value is not usable; use NewStats.
type Stats struct {
	mu       sync.RWMutex
	handlers map[string]*handlerCounters

	// hooks are the OnProcessed functions, replaced whole (copy on write)
	// so that a delivery reads them without a lock.
	hookMu sync.Mutex
	hooks  atomic.Pointer[[]*processedHook]
}

type processedHook struct {
	fn func(handler string, d time.Duration)
}

// OnProcessed adds fn, called after each delivery Middleware counts with
// the handler's name and the delivery's processing time (receipt to ack or
// nack, retries included: the time Processing summarizes). It is how that
// time reaches a Prometheus histogram (observe does this). fn runs on the
// delivery's goroutine, so it must be quick and safe for concurrent use.
// Call the returned function to remove fn; it is safe to call more than
// once.
func (s *Stats) OnProcessed(fn func(handler string, d time.Duration)) (remove func()) {
	s.hookMu.Lock()
	defer s.hookMu.Unlock()
	h := &processedHook{fn: fn}
	var hooks []*processedHook
	if old := s.hooks.Load(); old != nil {
		hooks = append(hooks, *old...)
	}
	hooks = append(hooks, h)
	s.hooks.Store(&hooks)
	return func() {
		s.hookMu.Lock()
		defer s.hookMu.Unlock()
		old := s.hooks.Load()
		if old == nil {
			return
		}
		kept := make([]*processedHook, 0, len(*old))
		for _, o := range *old {
			if o != h {
				kept = append(kept, o)
			}
		}
		s.hooks.Store(&kept)
	}
}

func (s *Stats) processed(handler string, d time.Duration) {
	if hooks := s.hooks.Load(); hooks != nil {
		for _, h := range *hooks {
			h.fn(handler, d)
		}
	}
}

// NewStats returns an empty collector.
func NewStats() *Stats { return &Stats{handlers: map[string]*handlerCounters{}} }

// HandlerStats is a snapshot of one handler's counters.
type HandlerStats struct {
	// Received counts deliveries handed to the handler's middleware stack.
	Received uint64 `json:"received"`
	// Acked counts deliveries that ended in an ack: handled, filtered or dead-lettered.
	Acked uint64 `json:"acked"`
	// Nacked counts deliveries that ended in a nack (they will be delivered again).
	Nacked uint64 `json:"nacked"`
	// Failed counts handler attempts that returned an error, timed out or panicked.
	Failed uint64 `json:"failed"`
	// Retried counts retries scheduled after a failed attempt.
	Retried uint64 `json:"retried"`
	// DeadLettered counts events sent to the dead-letter stream.
	DeadLettered uint64 `json:"deadLettered"`
	// Filtered counts events the handler's filter skipped (acked unprocessed).
	Filtered uint64 `json:"filtered"`
	// Duplicates counts deliveries of events the handler had already handled,
	// acked without running it (the Dedup middleware).
	Duplicates uint64 `json:"duplicates"`
	// InFlight is the number of deliveries being processed now.
	InFlight int64 `json:"inFlight"`
	// Processing summarizes the time from receipt to ack or nack.
	Processing DurationSummary `json:"processing"`
}

// DurationSummary summarizes a latency histogram. Quantiles are upper bounds
// of the histogram bucket they fall in (buckets double from 50µs).
type DurationSummary struct {
	Count uint64        `json:"count"`
	Sum   time.Duration `json:"sumNs"`
	P50   time.Duration `json:"p50Ns"`
	P90   time.Duration `json:"p90Ns"`
	P99   time.Duration `json:"p99Ns"`
	Max   time.Duration `json:"maxNs"`
}

const (
	histBuckets = 24
	histBase    = 50 * time.Microsecond
)

type handlerCounters struct {
	received, acked, nacked, failed, retried, deadLettered, filtered, duplicates atomic.Uint64
	inFlight                                                                     atomic.Int64

	hmu     sync.Mutex
	buckets [histBuckets + 1]uint64
	count   uint64
	sum     time.Duration
	max     time.Duration
}

func (s *Stats) counters(handler string) *handlerCounters {
	s.mu.RLock()
	c := s.handlers[handler]
	s.mu.RUnlock()
	if c != nil {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c = s.handlers[handler]; c == nil {
		c = &handlerCounters{}
		s.handlers[handler] = c
	}
	return c
}

// Middleware counts deliveries to handler. Put it outermost, so that it sees
// the final outcome (after retries and dead-lettering).
func (s *Stats) Middleware(handler string) message.HandlerMiddleware {
	c := s.counters(handler)
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			c.received.Add(1)
			c.inFlight.Add(1)
			start := time.Now()
			out, err := h(msg)
			d := time.Since(start)
			c.observe(d)
			s.processed(handler, d)
			c.inFlight.Add(-1)
			if err != nil {
				c.nacked.Add(1)
			} else {
				c.acked.Add(1)
			}
			return out, err
		}
	}
}

// AttemptMiddleware counts failed attempts (and, via ErrFiltered, filtered
// events) of handler. Put it inside Retry.
func (s *Stats) AttemptMiddleware(handler string) message.HandlerMiddleware {
	c := s.counters(handler)
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if errors.Is(err, ErrFiltered) {
				c.filtered.Add(1)
				return out, nil
			}
			if err != nil {
				c.failed.Add(1)
			}
			return out, err
		}
	}
}

// Duplicate counts one delivery of handler skipped as already handled (for
// Dedup.OnDuplicate).
func (s *Stats) Duplicate(handler string) { s.counters(handler).duplicates.Add(1) }

// Retried counts one retry of handler (for Retry.OnRetry).
func (s *Stats) Retried(handler string) { s.counters(handler).retried.Add(1) }

// DeadLettered counts one dead-lettered event of handler (for DeadLetter.OnDeadLetter).
func (s *Stats) DeadLettered(handler string) { s.counters(handler).deadLettered.Add(1) }

// Failed counts one failed attempt of handler that no middleware saw (for
// instance an event failed before the handler stack, such as an invalid one).
func (s *Stats) Failed(handler string) { s.counters(handler).failed.Add(1) }

func (c *handlerCounters) observe(d time.Duration) {
	i := 0
	if d > histBase {
		i = min(histBuckets, int(math.Ceil(math.Log2(float64(d)/float64(histBase)))))
	}
	c.hmu.Lock()
	c.buckets[i]++
	c.count++
	c.sum += d
	c.max = max(c.max, d)
	c.hmu.Unlock()
}

func (c *handlerCounters) summary() DurationSummary {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	s := DurationSummary{Count: c.count, Sum: c.sum, Max: c.max}
	q := func(p float64) time.Duration {
		if c.count == 0 {
			return 0
		}
		rank := uint64(math.Ceil(p * float64(c.count)))
		var cum uint64
		for i, n := range c.buckets {
			cum += n
			if cum >= rank {
				return min(c.max, histBase<<i)
			}
		}
		return c.max
	}
	s.P50, s.P90, s.P99 = q(0.5), q(0.9), q(0.99)
	return s
}

// Snapshot returns every handler's counters.
func (s *Stats) Snapshot() map[string]HandlerStats {
	s.mu.RLock()
	names := make([]string, 0, len(s.handlers))
	for n := range s.handlers {
		names = append(names, n)
	}
	s.mu.RUnlock()
	sort.Strings(names)
	out := make(map[string]HandlerStats, len(names))
	for _, n := range names {
		c := s.counters(n)
		out[n] = HandlerStats{
			Received: c.received.Load(), Acked: c.acked.Load(), Nacked: c.nacked.Load(),
			Failed: c.failed.Load(), Retried: c.retried.Load(), DeadLettered: c.deadLettered.Load(),
			Filtered: c.filtered.Load(), Duplicates: c.duplicates.Load(), InFlight: c.inFlight.Load(), Processing: c.summary(),
		}
	}
	return out
}
