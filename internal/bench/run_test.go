package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/internal/bench"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// tinyOptions are the smallest sizes that exercise every scenario.
func tinyOptions(client redis.UniversalClient, prefix string) bench.Options {
	return bench.Options{
		Client: client, Prefix: prefix,
		Events: 300, LatencySamples: 20, Rounds: 1, PatternStreams: 20, IdleStreams: 50,
		IdleWindow: 200 * time.Millisecond, PingWindow: 50 * time.Millisecond,
	}
}

// keysUnder returns the keys that start with prefix.
func keysUnder(t *testing.T, c redis.UniversalClient, prefix string) []string {
	t.Helper()
	keys, err := c.Keys(t.Context(), prefix+"*").Result()
	must(t, err)
	return keys
}

func TestRunTiny(t *testing.T) {
	client := redistest.Client(t)
	prefix := redistest.Prefix(t) // deletes leftovers, should Run leave any
	opts := tinyOptions(client, prefix)
	var steps []bench.Progress
	opts.Progress = func(p bench.Progress) { steps = append(steps, p) }

	rep, err := bench.Run(t.Context(), opts)
	must(t, err)

	if left := keysUnder(t, client, prefix); len(left) > 0 {
		t.Errorf("Run left %d keys under %s: %v", len(left), prefix, left)
	}
	if len(rep.Variants) != 13 {
		t.Errorf("%d variants, want 13", len(rep.Variants))
	}
	for _, v := range rep.Variants {
		if len(v.Rounds) != 1 {
			t.Errorf("%s: %d rounds, want 1", v.Name, len(v.Rounds))
			continue
		}
		m := v.Rounds[0]
		if m.Events <= 0 || m.Elapsed <= 0 || m.CPU <= 0 || v.EventsPerSec <= 0 || v.CPUNsPerEvent <= 0 {
			t.Errorf("%s: %+v (%.0f events/s, %.0f cpu-ns/event), want every value positive", v.Name, m, v.EventsPerSec, v.CPUNsPerEvent)
		}
		if strings.HasPrefix(v.Name, "IdleLatency/") && (m.P50 <= 0 || m.P99 < m.P50) {
			t.Errorf("%s: p50 %v p99 %v", v.Name, m.P50, m.P99)
		}
		if strings.HasPrefix(v.Name, "EndToEnd/") || strings.HasPrefix(v.Name, "Pattern/") {
			if m.Conns <= 0 {
				t.Errorf("%s: %d connections", v.Name, m.Conns)
			}
			if m.Events != 300 {
				t.Errorf("%s: %d events, want 300", v.Name, m.Events)
			}
		}
	}
	if i := rep.Idle; i == nil || i.Streams != 50 || i.Subscribe <= 0 || i.Probe <= 0 || i.PingP99 <= 0 || i.BasePingP99 <= 0 {
		t.Errorf("idle streams result %+v, want 50 streams and positive times", rep.Idle)
	}

	// Every check is computed from the results it names.
	if len(rep.Checks) != 12 {
		t.Errorf("%d checks, want 12", len(rep.Checks))
	}
	for _, c := range rep.Checks {
		if c.Of == "IdleStreams" {
			if c.Value != rep.Idle.HeapPerStream || c.Met == nil || *c.Met != (c.Value < 1024) {
				t.Errorf("%s: %+v, heap %f", c.Name, c, rep.Idle.HeapPerStream)
			}
			continue
		}
		of := rep.Variant(c.Of)
		if of == nil {
			t.Fatalf("%s: no variant %q", c.Name, c.Of)
		}
		want := bench.MetricValue(of.Rounds[0], c.Metric)
		if c.Over != "" {
			over := rep.Variant(c.Over)
			if over == nil {
				t.Fatalf("%s: no variant %q", c.Name, c.Over)
			}
			want /= bench.MetricValue(over.Rounds[0], c.Metric)
		}
		if len(c.Rounds) != 1 || math.Abs(c.Rounds[0]-want) > 1e-9*want || c.Value != c.Rounds[0] || want <= 0 {
			t.Errorf("%s: rounds %v value %v, want %v", c.Name, c.Rounds, c.Value, want)
		}
		if (c.Goal == nil) != (c.Met == nil) {
			t.Errorf("%s: target %v but met %v", c.Name, c.Goal, c.Met)
		}
	}

	// Progress: a start and a finish per step, ending at total.
	if len(steps) == 0 || len(steps)%2 != 0 {
		t.Fatalf("%d progress calls", len(steps))
	}
	last := steps[len(steps)-1]
	if !last.Finished || last.Done != last.Total || last.Total != len(steps)/2 {
		t.Errorf("last progress %+v after %d calls", last, len(steps))
	}

	var table bytes.Buffer
	must(t, rep.WriteTable(&table))
	for _, want := range []string{"GOMAXPROCS", "Redis ", "Publish/goredis-xadd", "EndToEnd/bus-router-defaults", "Pattern/streams-20", "CHECK", "TARGET", "≥ 3x", "targets met"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	js, err := json.Marshal(rep)
	must(t, err)
	var back bench.Report
	must(t, json.Unmarshal(js, &back))
	if len(back.Variants) != len(rep.Variants) || len(back.Checks) != len(rep.Checks) {
		t.Errorf("JSON round trip lost variants or checks: %s", js)
	}
}

func TestRunCancelledCleansUp(t *testing.T) {
	client := redistest.Client(t)
	prefix := redistest.Prefix(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	opts := tinyOptions(client, prefix)
	opts.Events = 5000
	opts.Progress = func(p bench.Progress) {
		if p.Finished && p.Done == 4 { // in the batch publish scenario
			cancel()
		}
	}
	_, err := bench.Run(ctx, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v, want context.Canceled", err)
	}
	if left := keysUnder(t, client, prefix); len(left) > 0 {
		t.Errorf("Run left %d keys under %s: %v", len(left), prefix, left)
	}
}

func TestRunRefuses(t *testing.T) {
	client := redistest.Client(t)
	prefix := redistest.Prefix(t)
	must(t, client.Set(t.Context(), prefix+"mine", "1", 0).Err())
	_, err := bench.Run(t.Context(), tinyOptions(client, prefix))
	if !errors.Is(err, bench.ErrPrefixInUse) {
		t.Errorf("Run on a prefix with keys: %v, want ErrPrefixInUse", err)
	}
	if n, _ := client.Exists(t.Context(), prefix+"mine").Result(); n != 1 {
		t.Error("Run deleted a key it did not write")
	}

	_, err = bench.Run(t.Context(), bench.Options{Client: redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})})
	if !errors.Is(err, bench.ErrCluster) {
		t.Errorf("Run on a cluster client: %v, want ErrCluster", err)
	}
	_, err = bench.Run(t.Context(), bench.Options{Client: client, Events: -1, Rounds: -1, IdleStreams: -5})
	if !errors.Is(err, bench.ErrInvalidOptions) || strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("Run with three bad options: %v, want ErrInvalidOptions naming all three", err)
	}
}
