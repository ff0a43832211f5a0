package bus

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// IsTransient reports whether err, from Redis or the connection to it, may
// go away by waiting: Redis cannot be reached or is restarting (connection
// refused or reset, timeouts, an unknown host name, LOADING, MASTERDOWN,
// CLUSTERDOWN, TRYAGAIN, BUSY, READONLY after a failover) or is out of
// memory (OOM). Consumers retry those with backoff. Everything else is a
// misconfiguration that waiting does not cure — credentials refused (NOAUTH,
// WRONGPASS), an ACL denial (NOPERM), a TLS failure, a key of the wrong
// type — and a consumer fails on it at once with the error.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY ", "READONLY", "OOM", "ERR max number of clients",
			// Failing over: a blocked read ended by the failover, and
			// redirects left after the cluster client's own retries.
			"UNBLOCKED", "MOVED ", "ASK "} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	var ne net.Error
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, net.ErrClosed) || (errors.As(err, &ne) && !isTLSFailure(err))
}

// isTLSFailure reports whether err is a TLS handshake or certificate
// failure, which some net.Error values wrap.
func isTLSFailure(err error) bool {
	s := err.Error()
	return strings.Contains(s, "tls:") || strings.Contains(s, "x509:")
}

// Backoff of a consumer waiting for Redis: from 50 ms doubling to 1 s, each
// wait with ±20% jitter, so that a Redis that comes back is read again
// within about a second (plus go-redis's own one-second redial probe), and
// consumers do not retry in lockstep.
const (
	retryInitial = 50 * time.Millisecond
	retryMax     = time.Second
)

// jitter returns d ± 20%.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d + time.Duration((rand.Float64()*0.4-0.2)*float64(d))
}

// nextBackoff doubles d up to retryMax.
func nextBackoff(d time.Duration) time.Duration { return min(2*d, retryMax) }
