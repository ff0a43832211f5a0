package gateway

import (
	"context"
	"math"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// rateKeyInfix names the rate-limit keys of a bus: the key of principal p
// is "rate:<StreamPrefix>$ingress:<p>" ("rate:" is redis_rate's prefix;
// "$" keeps it apart from any stream of a valid type). Each key expires
// once its bucket is full again.
const rateKeyInfix = "$ingress:"

// sharedLimiter is the ingress rate limit shared by every gateway on one
// Redis: a GCRA bucket per principal in Redis (github.com/go-redis/redis_rate),
// so N replicas together allow the configured rate, not N times it.
type sharedLimiter struct {
	lim    *redis_rate.Limiter
	limit  redis_rate.Limit
	prefix string
	local  *rateLimiter // while Redis cannot be asked
	logger watermill.LoggerAdapter
}

func newSharedLimiter(c redis.UniversalClient, prefix string, rl RateLimit, local *rateLimiter, logger watermill.LoggerAdapter) *sharedLimiter {
	return &sharedLimiter{
		lim:    redis_rate.NewLimiter(c),
		limit:  gcraLimit(rl.PerSecond, rl.Burst),
		prefix: prefix + rateKeyInfix,
		local:  local,
		logger: logger,
	}
}

// gcraLimit expresses perSecond (which may be fractional) as redis_rate's
// integer Rate per Period with the same emission interval (1/perSecond).
func gcraLimit(perSecond float64, burst int) redis_rate.Limit {
	const scale = 1000
	rate := max(1, int(math.Round(perSecond*scale)))
	return redis_rate.Limit{Rate: rate, Burst: burst, Period: scale * time.Second}
}

// allow takes one request of key from the shared bucket. When Redis cannot
// be asked it falls back to this process's own bucket (and logs it), so a
// Redis hiccup neither opens ingress wide nor closes it.
func (s *sharedLimiter) allow(ctx context.Context, key string) bool {
	res, err := s.lim.Allow(ctx, s.prefix+key, s.limit)
	if err != nil {
		s.logger.Error("Shared rate limit unavailable; using this process's own limit", err, nil)
		return s.local.Allow(key)
	}
	return res.Allowed > 0
}

// allow applies the ingress rate limit to principal key.
func (g *Gateway) allow(ctx context.Context, key string) bool {
	switch {
	case g.shared != nil:
		return g.shared.allow(ctx, key)
	case g.limiter != nil:
		return g.limiter.Allow(key)
	}
	return true
}
