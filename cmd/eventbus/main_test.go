package main_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/internal/redistest"
)

// binary is the eventbus command built once by TestMain (with -race when the
// tests run with -race, so the race detector watches the command too).
var binary string

// raceEnabled is set by race_test.go under -race.
var raceEnabled bool

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "eventbus-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "create build dir:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "eventbus")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "go build ./cmd/eventbus:", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the command did.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs the command with args against the test Redis, with stdin as its
// standard input (none: /dev/null, not a terminal), and returns what it did.
func cli(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	return cliCtx(ctx, t, stdin, args...)
}

func cliCtx(ctx context.Context, t *testing.T, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = childEnv("REDIS_URL=" + redistest.URL())
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run eventbus %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("eventbus %s did not finish in time; stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.stdout, r.stderr)
	}
	return r
}

// childEnv is the environment of a run of the command: the test's own, with
// extra. A race-enabled binary would otherwise sleep 1s at exit
// (GORACE atexit_sleep_ms); the caller's GORACE options still win.
func childEnv(extra ...string) []string {
	env := append(os.Environ(), extra...)
	return append(env, strings.TrimSpace("GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE")))
}

// ok fails the test unless r succeeded.
func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit code %d, want 0; stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return r
}

// failsWith checks the exit code and that stderr is one line starting with
// "eventbus: " and holding every one of want.
func (r result) failsWith(t *testing.T, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d; stdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "eventbus: ") {
		t.Errorf("stderr is not one line starting with \"eventbus: \":\n%s", r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr does not mention %q:\n%s", w, r.stderr)
		}
	}
}

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// setup returns a Redis client and a fresh key prefix (deleted when the test
// ends), and the global flags that point the command at it.
func setup(t *testing.T) (redis.UniversalClient, string, []string) {
	t.Helper()
	c := redistest.Client(t)
	prefix := redistest.Prefix(t)
	return c, prefix, []string{"--prefix", prefix}
}

func with(global []string, args ...string) []string {
	return append(append([]string{}, global...), args...)
}
