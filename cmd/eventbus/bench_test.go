package main_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/internal/redistest"
)

// tinyBench are the smallest sizes that run every scenario of bench.
var tinyBench = []string{
	"bench", "--events", "300", "--latency-samples", "20", "--rounds", "1",
	"--pattern-streams", "20", "--idle-streams", "50", "--idle-window", "200ms", "--ping-window", "50ms",
}

// noKeysUnder fails t if a key starts with prefix.
func noKeysUnder(t *testing.T, c redis.UniversalClient, prefix string) {
	t.Helper()
	keys, err := c.Keys(t.Context(), prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		t.Errorf("bench left %d keys under %s: %v", len(keys), prefix, keys)
	}
}

func TestBenchTable(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	r := cli(t, "", with(global, tinyBench...)...).ok(t)
	for _, want := range []string{
		"GOMAXPROCS", "Redis ", "VARIANT", "EVENTS/S", "CPU-NS/EVENT",
		"Publish/goredis-xadd", "Publish/bus100", "EndToEnd/bus-router-defaults", "IdleLatency/bus", "Pattern/streams-20",
		"idle pattern subscription over 50 empty streams",
		"CHECK", "TARGET", "end to end: bus router (default stack) / redisstream router", "≥ 3x", "targets met",
		"keys under " + prefix + " (deleted)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
	// Not a terminal: one plain line per finished step, the last one 14/14.
	steps := lines(r.stderr)
	if len(steps) != 14 || !strings.HasPrefix(steps[13], "bench: 14/14 done") || strings.Contains(r.stderr, "\r") {
		t.Errorf("stderr is not one line per step:\n%s", r.stderr)
	}
	noKeysUnder(t, c, prefix)
}

func TestBenchJSON(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	r := cli(t, "", with(global, append(tinyBench, "--json")...)...).ok(t)
	var rep struct {
		Machine struct {
			GoVersion    string `json:"goVersion"`
			RedisVersion string `json:"redisVersion"`
		} `json:"machine"`
		Variants []struct {
			Name         string  `json:"name"`
			EventsPerSec float64 `json:"eventsPerSec"`
		} `json:"variants"`
		Checks []struct {
			Name   string    `json:"name"`
			Value  float64   `json:"value"`
			Rounds []float64 `json:"rounds"`
			Met    *bool     `json:"met"`
			Goal   *struct {
				Op    string  `json:"op"`
				Limit float64 `json:"limit"`
			} `json:"target"`
		} `json:"checks"`
		IdleStreams *struct {
			Streams int `json:"streams"`
		} `json:"idleStreams"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("bench --json is not JSON (%v):\n%s", err, r.stdout)
	}
	if rep.Machine.GoVersion == "" || rep.Machine.RedisVersion == "" {
		t.Errorf("machine %+v, want Go and Redis versions", rep.Machine)
	}
	if len(rep.Variants) != 13 {
		t.Errorf("%d variants, want 13", len(rep.Variants))
	}
	for _, v := range rep.Variants {
		if v.EventsPerSec <= 0 {
			t.Errorf("variant %s: %v events/s", v.Name, v.EventsPerSec)
		}
	}
	if len(rep.Checks) != 12 || rep.IdleStreams == nil || rep.IdleStreams.Streams != 50 {
		t.Errorf("%d checks, idle streams %+v; want 12 checks and 50 idle streams", len(rep.Checks), rep.IdleStreams)
	}
	for _, ch := range rep.Checks {
		if (ch.Goal == nil) != (ch.Met == nil) || ch.Value <= 0 || len(ch.Rounds) != 1 {
			t.Errorf("check %+v", ch)
		}
	}
	noKeysUnder(t, c, prefix)
}

func TestBenchUsageErrors(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	if err := c.Set(t.Context(), prefix+"someone-else", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown flag", []string{"bench", "--bogus"}, []string{"unknown flag: --bogus", "eventbus bench --help"}},
		{"argument", []string{"bench", "now"}, []string{"usage: eventbus bench"}},
		{"bad sizes", []string{"bench", "--rounds", "0", "--events", "-1"}, []string{"invalid --events -1", "invalid --rounds 0", "or more"}},
		{"bad window", []string{"bench", "--idle-window", "0s"}, []string{"invalid --idle-window 0s", "positive duration"}},
		{"prefix in use", []string{"bench"}, []string{"keys already exist under the prefix", prefix, "another --prefix"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cli(t, "", with(global, tc.args...)...).failsWith(t, 2, tc.want...)
		})
	}
	if n, _ := c.Exists(t.Context(), prefix+"someone-else").Result(); n != 1 {
		t.Error("bench deleted a key it did not write")
	}
}

func TestBenchUnreachableRedis(t *testing.T) {
	t.Parallel()
	r := cli(t, "", "--redis-url", "redis://:hunter2secret@127.0.0.1:1/0", "bench")
	r.failsWith(t, 1, "cannot reach Redis at redis://", "127.0.0.1:1", "connection refused", "start Redis or set --redis-url/REDIS_URL")
	if strings.Contains(r.stderr, "hunter2secret") {
		t.Errorf("stderr shows the password: %s", r.stderr)
	}
}

func TestBenchHelp(t *testing.T) {
	t.Parallel()
	r := cli(t, "", "bench", "--help").ok(t)
	for _, want := range []string{"Examples:", "eventbus bench --events", "production", "deleted", "--idle-streams", "--json", "Ctrl-C"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("bench --help lacks %q:\n%s", want, r.stdout)
		}
	}
	if r = cli(t, "", "--help").ok(t); !strings.Contains(r.stdout, "bench ") {
		t.Errorf("bench is not listed in eventbus --help:\n%s", r.stdout)
	}
}

// TestBenchInterrupt stops a run with SIGINT (Ctrl-C) after its first step:
// exit 1, one line that says so, no key left.
func TestBenchInterrupt(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	cmd := exec.CommandContext(t.Context(), binary, with(global, "bench", "--events", "3000", "--rounds", "3")...)
	cmd.Env = childEnv("REDIS_URL=" + redistest.URL())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var rest []string
	first := true
	for sc.Scan() {
		if first {
			first = false
			if !strings.HasPrefix(sc.Text(), "bench: 1/") {
				t.Errorf("first stderr line %q, want a finished step", sc.Text())
			}
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			continue
		}
		rest = append(rest, sc.Text())
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		t.Fatal("bench did not stop within 60s of SIGINT")
	}
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit %v after SIGINT, want code 1; stderr after it: %q", err, rest)
	}
	if len(rest) == 0 || !strings.HasPrefix(rest[len(rest)-1], "eventbus: bench interrupted; its keys were deleted") {
		t.Errorf("stderr after SIGINT %q, want it to end with the interruption", rest)
	}
	if out.Len() > 0 {
		t.Errorf("stdout %q, want nothing", out.String())
	}
	noKeysUnder(t, c, prefix)
}
