// Package routertest runs a router.Router for the length of a test.
//
// It is for tests only (it imports testing) and is shared by the test
// packages that drive routers: router, observe, photo and faults.
package routertest

import (
	"context"
	"testing"
	"time"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/middleware"
	"github.com/shared-infra/eventbus/router"
)

// Timeout bounds how long Start waits for the router to run, and how long
// the cleanup waits for Run to return once the router is closed.
const Timeout = 10 * time.Second

// Start runs r until the test ends. It waits (Timeout) until r is running and
// calls t.Fatalf if Run returns first or the time runs out. A t.Cleanup
// cancels Run's context, closes r and waits (Timeout) for Run to return,
// calling t.Errorf if it does not.
func Start(t testing.TB, r *router.Router) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var runErr error
	stopped := make(chan struct{}) // closed when Run has returned runErr
	go func() {
		runErr = r.Run(ctx)
		close(stopped)
	}()
	t.Cleanup(func() {
		cancel()
		_ = r.Close()
		select {
		case <-stopped:
		case <-time.After(Timeout):
			t.Errorf("router did not stop in %s", Timeout)
		}
	})
	select {
	case <-r.Running():
	case <-stopped:
		t.Fatalf("router did not start: %v", runErr)
	case <-time.After(Timeout):
		t.Fatalf("router did not start in %s", Timeout)
	}
}

// FastConfig is a router config with short timings for tests: 3 attempts 5 ms
// to 20 ms apart, handlers bounded by 5 s, Close by 3 s, reads blocking 20 ms,
// claims every 100 ms of what is idle 500 ms.
func FastConfig() router.Config {
	return router.Config{
		Retry:          middleware.Retry{MaxAttempts: 3, InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond},
		HandlerTimeout: 5 * time.Second,
		CloseTimeout:   3 * time.Second,
		Subscriber:     bus.SubscriberConfig{BlockTime: 20 * time.Millisecond, ClaimInterval: 100 * time.Millisecond, ClaimMinIdle: 500 * time.Millisecond},
	}
}
