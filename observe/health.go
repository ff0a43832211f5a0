package observe

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
)

// Status is the state of a check or of a whole health report.
type Status string

// Status values. A report is "ok" (HTTP 200) or not (HTTP 503); "degraded"
// means live but not ready (a handler lags); "starting" appears only on the
// router check, before Run.
const (
	StatusOK       Status = "ok"
	StatusDegraded Status = "degraded"
	StatusDown     Status = "down"
	StatusStarting Status = "starting"
)

// Health is a liveness or readiness report, what /healthz and /readyz serve.
type Health struct {
	Status Status `json:"status"`
	Checks Checks `json:"checks"`
}

// Checks are the parts of a Health report. Liveness has only Router.
type Checks struct {
	Redis    *RedisCheck             `json:"redis,omitempty"`
	Router   RouterCheck             `json:"router"`
	Handlers map[string]HandlerCheck `json:"handlers,omitempty"`
}

// RedisCheck is Redis's reachability: a PING and its round-trip time.
type RedisCheck struct {
	Status Status `json:"status"`
	// RTTMs is the PING round trip in milliseconds (when Status is ok).
	RTTMs float64 `json:"rttMs"`
	// Error says why Redis is down. It never contains credentials.
	Error string `json:"error,omitempty"`

	rtt time.Duration
}

// RouterCheck is the state of the Watermill router: Detail is one of
// RouterNotStarted (Status starting), RouterRunning (ok), RouterClosing and
// RouterClosed (down).
type RouterCheck struct {
	Status Status `json:"status"`
	Detail string `json:"detail"`
}

// HandlerCheck is one handler in a readiness report.
type HandlerCheck struct {
	// Status is ok, degraded (Lag above Config.LagDegradedThreshold), down
	// (not consuming) or starting (the router does not run yet).
	Status    Status `json:"status"`
	Consuming bool   `json:"consuming"`
	Lag       int64  `json:"lag"`
	Pending   int64  `json:"pending"`
	// LagKnown is false when Redis could not be read or could not tell.
	LagKnown bool `json:"lagKnown"`
	// Lost is the handler's entries removed before its group read them
	// (HandlerSnapshot.Lost). With Config.LossDegradedFor set, a handler
	// whose Lost grew within that time is degraded.
	Lost   int64  `json:"lost"`
	Detail string `json:"detail,omitempty"`
}

// HTTPStatus is the HTTP status code of a report: 200 when ok, else 503.
func (h Health) HTTPStatus() int {
	if h.Status == StatusOK {
		return 200
	}
	return 503
}

func (o *Observer) routerCheck() RouterCheck {
	switch d := o.state.get(); d {
	case RouterRunning:
		return RouterCheck{Status: StatusOK, Detail: d}
	case RouterNotStarted:
		return RouterCheck{Status: StatusStarting, Detail: d}
	default:
		return RouterCheck{Status: StatusDown, Detail: d}
	}
}

// Liveness reports whether the process should be left running: ok unless
// the router itself is closing or closed (its handlers all stopped, or it was
// closed). A router not started yet is live. Redis is not checked: an outage
// of Redis is no reason to restart the service.
func (o *Observer) Liveness(context.Context) Health {
	rc := o.routerCheck()
	h := Health{Status: StatusOK, Checks: Checks{Router: rc}}
	if rc.Status == StatusDown {
		h.Status = StatusDown
	}
	return h
}

// Readiness reports whether the service should get traffic: ok when Redis
// answers a PING, the router runs, every handler consumes and none lags more
// than Config.LagDegradedThreshold. A lagging handler makes the report
// "degraded" (live but not ready); anything else wrong makes it "down". Both
// answer 503.
func (o *Observer) Readiness(ctx context.Context) Health {
	rc := o.routerCheck()
	patterns := o.r.Handlers()
	consuming := o.r.Consuming()
	rs := o.readRedis(ctx, patterns)
	redisCheck := rs.check
	h := Health{Status: StatusOK, Checks: Checks{Redis: &redisCheck, Router: rc, Handlers: make(map[string]HandlerCheck, len(patterns))}}
	down := redisCheck.Status != StatusOK || rc.Status != StatusOK
	degraded := false
	for name := range patterns {
		hc := HandlerCheck{Status: StatusOK, Consuming: consuming[name]}
		if l, ok := rs.lags[name]; ok {
			hc.Lag, hc.Pending, hc.LagKnown, hc.Lost = l.lag, l.pending, l.known, l.lost
		}
		lossAt := o.losses.seen(name, hc.Lost, time.Now())
		switch {
		case rc.Status == StatusStarting:
			hc.Status, hc.Detail = StatusStarting, "the router is not running yet"
		case !hc.Consuming:
			hc.Status, hc.Detail = StatusDown, "not consuming: its subscription is closed"
			down = true
		case o.cfg.LagDegradedThreshold >= 0 && hc.Lag > o.cfg.LagDegradedThreshold:
			hc.Status, hc.Detail = StatusDegraded, fmt.Sprintf("lag %d is above %d", hc.Lag, o.cfg.LagDegradedThreshold)
			degraded = true
		case o.cfg.LossDegradedFor > 0 && !lossAt.IsZero() && time.Since(lossAt) < o.cfg.LossDegradedFor:
			hc.Status, hc.Detail = StatusDegraded, fmt.Sprintf("%d entries were trimmed before it read them (the last at %s)", hc.Lost, lossAt.UTC().Format(time.RFC3339))
			degraded = true
		}
		h.Checks.Handlers[name] = hc
	}
	switch {
	case down:
		h.Status = StatusDown
	case degraded:
		h.Status = StatusDegraded
	}
	o.logTransition(h)
	return h
}

// lossTracker remembers each handler's loss total and when it last grew,
// for Config.LossDegradedFor.
type lossTracker struct {
	mu sync.Mutex
	m  map[string]lossSeen
}

type lossSeen struct {
	total int64
	grew  time.Time
}

// seen records total for handler and returns when it last grew (zero: never
// seen growing; a total already there when first seen does not count).
func (l *lossTracker) seen(handler string, total int64, now time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]lossSeen{}
	}
	prev, ok := l.m[handler]
	if ok && total > prev.total {
		prev.grew = now
	}
	prev.total = total
	l.m[handler] = prev
	return prev.grew
}

// logTransition logs when readiness changes status, with the failing checks.
func (o *Observer) logTransition(h Health) {
	prev, _ := o.lastReadiness.Swap(h.Status).(Status)
	if prev == h.Status || (prev == "" && h.Status == StatusOK) {
		return
	}
	fields := watermill.LogFields{"status": string(h.Status), "previous": string(prev), "router": h.Checks.Router.Detail}
	if r := h.Checks.Redis; r != nil && r.Status != StatusOK {
		fields["redis_error"] = r.Error
	}
	for name, hc := range h.Checks.Handlers {
		if hc.Status != StatusOK {
			fields["handler_"+name] = string(hc.Status) + ": " + hc.Detail
		}
	}
	switch {
	case h.Status == StatusOK:
		o.logger.Info("Ready again", fields)
	case prev == StatusOK:
		o.logger.Error("Not ready any more", nil, fields)
	default: // first report, or down <-> degraded
		o.logger.Info("Not ready", fields)
	}
}
