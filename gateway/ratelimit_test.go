package gateway_test

import (
	"fmt"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shared-infra/eventbus/gateway"
)

func TestNewRateLimiterRejects(t *testing.T) {
	for _, tt := range []struct {
		rate  float64
		burst int
		ttl   time.Duration
	}{
		{0, 1, 0}, {-1, 1, 0}, {math.NaN(), 1, 0}, {math.Inf(1), 1, 0},
		{1, 0, 0}, {1, -3, 0},
		{1, 1, -time.Second},
	} {
		if _, err := gateway.NewRateLimiter(tt.rate, tt.burst, tt.ttl); err == nil {
			t.Errorf("NewRateLimiter(%v, %d, %s) accepted", tt.rate, tt.burst, tt.ttl)
		}
	}
}

func TestRateLimiterIdleTTL(t *testing.T) {
	for _, tt := range []struct {
		rate  float64
		burst int
		ttl   time.Duration
		want  time.Duration
	}{
		{1, 1, 0, gateway.DefaultIdleTTL},
		{10, 5, time.Minute, time.Minute},
		{1, 120, time.Second, 120 * time.Second}, // raised to the refill time
		{1e-300, 1, time.Second, math.MaxInt64 / 4},
	} {
		l, err := gateway.NewRateLimiter(tt.rate, tt.burst, tt.ttl)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.IdleTTL(); got != tt.want {
			t.Errorf("NewRateLimiter(%v, %d, %s).IdleTTL() = %s, want %s", tt.rate, tt.burst, tt.ttl, got, tt.want)
		}
	}
}

// The bubble's clock stands still unless the test sleeps, so the burst is
// exact; synctest.Test also fails if the limiter leaves a goroutine behind.
func TestRateLimiterBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, err := gateway.NewRateLimiter(1, 3, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if !l.Allow("alice") {
				t.Fatalf("alice request %d denied within the burst", i+1)
			}
		}
		if l.Allow("alice") {
			t.Fatal("alice request 4 allowed beyond the burst of 3")
		}
		for i := range 3 {
			if !l.Allow("bob") {
				t.Fatalf("bob request %d denied: keys must not share a bucket", i+1)
			}
		}
		if l.Allow("bob") || l.Allow("alice") {
			t.Fatal("allowed beyond the burst")
		}
	})
}

func TestRateLimiterEvictsIdleKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, err := gateway.NewRateLimiter(10, 1, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			l.Allow(fmt.Sprint("k", i))
		}
		if n := l.Len(); n != 100 {
			t.Fatalf("Len() = %d, want 100", n)
		}

		time.Sleep(30 * time.Second)
		l.Allow("k0") // k0 stays fresh
		time.Sleep(45 * time.Second)
		// 75s after k1..k99 were last seen, more than a TTL: the next call
		// sweeps them; k0 was seen 45s ago and stays.
		l.Allow("new")
		if n := l.Len(); n != 2 {
			t.Fatalf("Len() = %d after the sweep, want 2 (k0 and new)", n)
		}
	})
}
