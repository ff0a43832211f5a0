package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestExecuteTiny runs every scenario on every system once at small sizes
// against the real servers: runScenario fails unless every event reached
// every group, so a passing run means nothing was lost anywhere.
func TestExecuteTiny(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := Config{
		RedisURL: envOr("REDIS_URL", "redis://127.0.0.1:6379/0"),
		NATSURL:  envOr("NATS_URL", "nats://127.0.0.1:4222"),
		AMQPURL:  envOr("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
		Sizes:    Sizes{Events: 300, Publishers: 3, Groups: 2, LatencyEvents: 50, Rate: 1000},
		Rounds:   1, Systems: Systems, Scenarios: Scenarios,
	}
	run, err := Execute(ctx, cfg)
	if err != nil {
		t.Fatalf("Execute (needs Redis, NATS with JetStream and RabbitMQ on loopback): %v", err)
	}
	for _, sc := range Scenarios {
		for _, s := range Systems {
			rs := run.Results[sc][s]
			if len(rs) != 1 || rs[0].Rate <= 0 {
				t.Errorf("%s %s: results %+v, want one with a rate", sc, s, rs)
			}
			if sc == ScenarioLatency && (rs[0].P50 <= 0 || rs[0].P99 < rs[0].P50) {
				t.Errorf("%s %s: p50 %s p99 %s", sc, s, rs[0].P50, rs[0].P99)
			}
		}
	}
	var out bytes.Buffer
	run.WriteTable(&out)
	if !strings.Contains(out.String(), "of 6 targets met") {
		t.Errorf("table has no target summary:\n%s", out.String())
	}
}

func TestValidate(t *testing.T) {
	err := Config{Systems: []string{"kafka"}, Scenarios: []string{"soak"}, Rounds: 0}.validate()
	if err == nil {
		t.Fatal("no error for an unknown system, scenario and zero sizes")
	}
	for _, want := range []string{`unknown system "kafka"`, `unknown scenario "soak"`, "rounds 0", "events 0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
