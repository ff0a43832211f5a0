package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shared-infra/eventbus/internal/redistest"
)

// TestMain runs the gateway process when the load run re-executes the test
// binary as its gateway (see Run), and the tests otherwise.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == roleGateway {
		os.Exit(gatewayMain())
	}
	os.Exit(m.Run())
}

// TestLoadSmall is the load run at small parameters, as a correctness test:
// the gateway in its own process, 50 clients, 2 s of mixed addressing.
// Every delivery must arrive exactly once and no stream may be cut. It
// asserts nothing about timing.
func TestLoadSmall(t *testing.T) {
	redistest.Client(t) // fails with instructions when there is no Redis
	var log strings.Builder
	cfg := Config{
		RedisURL: redistest.URL(),
		Prefix:   redistest.Prefix(t),
		Clients:  50,
		Users:    10,
		Rooms:    5,
		Rate:     200,
		Duration: 2 * time.Second,
		Drain:    2 * time.Minute, // a bound, not an expectation
	}
	res, err := Run(t.Context(), cfg, &log)
	t.Log(log.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("\n%s", res.Markdown())

	if res.PublishErrors != 0 {
		t.Errorf("%d events could not be published", res.PublishErrors)
	}
	if got, want := res.Published[0]+res.Published[1]+res.Published[2], 400; got != want {
		t.Errorf("published %d events, want %d", got, want)
	}
	for k, name := range []string{"broadcast", "user", "room"} {
		if res.Received[k] != res.Expected[k] {
			t.Errorf("%s deliveries: received %d, want %d", name, res.Received[k], res.Expected[k])
		}
	}
	if res.Cut != 0 {
		t.Errorf("%d streams were cut (%d for falling behind), want none", res.Cut, res.CutSlow)
	}
	if res.Idle.Clients != cfg.Clients {
		t.Errorf("the gateway process reported %d streams, want %d", res.Idle.Clients, cfg.Clients)
	}
}
