package gateway

import (
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// rateLimiter is a set of token-bucket limiters ([rate.Limiter]), one per
// key (a user, an API key, a remote address), created on first use.
//
// The map of keys stays bounded without a background goroutine: Allow
// itself runs a janitor pass, at most once per half idle TTL, that removes
// keys not seen for longer than the idle TTL. The map therefore holds at
// most the keys seen within about 1.5 idle TTLs, there is nothing to stop or
// Close, and a rateLimiter that is no longer referenced is simply garbage
// collected. A pass costs time proportional to the number of keys, spread
// over the calls of half a TTL.
//
// Evicting a key forgets its bucket, which comes back full on the key's next
// request. The idle TTL is therefore never shorter than the time an empty
// bucket takes to refill (burst / perSecond), so eviction never hands out
// tokens the key would not have had anyway.
//
// A rateLimiter is safe for concurrent use.
type rateLimiter struct {
	limit   rate.Limit
	burst   int
	idleTTL time.Duration

	mu        sync.Mutex
	entries   map[string]*rateEntry
	nextSweep time.Time
}

type rateEntry struct {
	lim      *rate.Limiter
	lastSeen time.Time
}

// defaultIdleTTL is the idle TTL newRateLimiter uses when given 0.
const defaultIdleTTL = 10 * time.Minute

// newRateLimiter returns a limiter allowing each key perSecond events per
// second on average with bursts of up to burst events. Keys idle for longer
// than idleTTL are forgotten (0 means defaultIdleTTL; a value shorter than
// burst/perSecond is raised to it, see [rateLimiter]).
//
// perSecond must be finite and greater than 0, burst at least 1 and idleTTL
// not negative.
func newRateLimiter(perSecond float64, burst int, idleTTL time.Duration) (*rateLimiter, error) {
	switch {
	case math.IsNaN(perSecond) || math.IsInf(perSecond, 0) || perSecond <= 0:
		return nil, fmt.Errorf("gateway: rate limiter: perSecond is %v: must be a finite number greater than 0", perSecond)
	case burst < 1:
		return nil, fmt.Errorf("gateway: rate limiter: burst is %d: must be 1 or more", burst)
	case idleTTL < 0:
		return nil, fmt.Errorf("gateway: rate limiter: idleTTL is %s: must be 0 (default %s) or more", idleTTL, defaultIdleTTL)
	}
	if idleTTL == 0 {
		idleTTL = defaultIdleTTL
	}
	// Check in floating point: converting a value beyond int64 is undefined.
	const longest = math.MaxInt64 / 4 // ~73 years: forever in practice
	refill := time.Duration(longest)
	if f := math.Ceil(float64(burst) / perSecond * float64(time.Second)); f < longest {
		refill = time.Duration(f)
	}
	idleTTL = max(idleTTL, refill)
	return &rateLimiter{
		limit:   rate.Limit(perSecond),
		burst:   burst,
		idleTTL: idleTTL,
		entries: make(map[string]*rateEntry),
	}, nil
}

// Allow reports whether an event for key may happen now, and consumes a
// token if so.
func (l *rateLimiter) Allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !now.Before(l.nextSweep) {
		l.sweep(now)
	}
	e, ok := l.entries[key]
	if !ok {
		e = &rateEntry{lim: rate.NewLimiter(l.limit, l.burst)}
		l.entries[key] = e
	}
	e.lastSeen = now
	return e.lim.AllowN(now, 1)
}

// Len returns the number of keys currently tracked.
func (l *rateLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// IdleTTL returns the effective idle TTL, after the default and the raise to
// the refill time.
func (l *rateLimiter) IdleTTL() time.Duration {
	return l.idleTTL
}

// sweep removes the keys idle for longer than the TTL and schedules the next
// pass. l.mu must be held.
func (l *rateLimiter) sweep(now time.Time) {
	for k, e := range l.entries {
		if now.Sub(e.lastSeen) > l.idleTTL {
			delete(l.entries, k)
		}
	}
	l.nextSweep = now.Add(l.idleTTL / 2)
}
