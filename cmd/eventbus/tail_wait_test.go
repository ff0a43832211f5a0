//go:build !cluster

// These tests put a fault proxy or an ACL user in front of one Redis
// server; on a cluster the client's MOVED redirects bypass a proxy in front
// of one node, and ACL users are per node, so the cluster build leaves them
// out (make test runs them against a single server).

package main_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/internal/faultproxy"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// waitRefused waits until the proxy has refused more than n+4 connections:
// the command tried to reach the "down" Redis.
func waitRefused(ctx context.Context, t *testing.T, p *faultproxy.Proxy, n int, done <-chan result) {
	t.Helper()
	// go-redis itself retries a command 3 times (MaxRetries) before the
	// command sees the error: wait past those, so the outage reaches the
	// command and it has to wait for Redis itself.
	for p.Refused() <= n+4 {
		select {
		case r := <-done:
			t.Fatalf("the command ended while Redis was down: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		case <-ctx.Done():
			t.Fatal("the command never tried to reach Redis")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// tail starts while Redis is down, waits for it, and rides out a Redis
// outage in the middle: every event is shown once, in order.
func TestTailWaitsForRedisAndRidesOutRestarts(t *testing.T) {
	t.Parallel()
	_, _, global := setup(t)
	opts, err := redis.ParseURL(redistest.URL())
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.New(opts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	// max_retries=-1: go-redis does not retry a failed command by itself,
	// so once the proxy has refused more connections than one command dials
	// (5 attempts), tail has seen an error and said so.
	u := strings.Replace(redistest.URL(), opts.Addr, p.Addr(), 1)
	if strings.Contains(u, "?") {
		u += "&max_retries=-1"
	} else {
		u += "?max_retries=-1"
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	id1 := publish(t, global, "up.one", `{"n":1}`) // before tail starts
	p.SetRefusing(true)
	done := make(chan result, 1)
	go func() {
		done <- cliCtx(ctx, t, "", with(global, "--redis-url", u, "tail", "up.*", "--from", "0", "--count", "3", "--refresh", "100ms", "--json")...)
	}()
	waitRefused(ctx, t, p, 10, done)
	id2 := publish(t, global, "up.two", `{"n":2}`) // while tail waits
	p.SetRefusing(false)

	// Wait until tail follows both streams (blocked in XREAD through the proxy),
	// then take Redis away again.
	for p.Conns() == 0 {
		select {
		case r := <-done:
			if r.code != 0 || len(lines(r.stdout)) >= 3 {
				t.Fatalf("tail ended early: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
		case <-ctx.Done():
			t.Fatal("tail did not connect once Redis answered")
		case <-time.After(10 * time.Millisecond):
		}
	}
	refused := p.Refused()
	p.SetRefusing(true)
	p.CutAll()
	waitRefused(ctx, t, p, refused+10, done)
	id3 := publish(t, global, "up.one", `{"n":3}`) // during the outage
	p.SetRefusing(false)

	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("tail did not show the 3 events after Redis came back")
	}
	r.ok(t)
	evs := parseTail(t, r.stdout)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3:\n%s\nstderr:\n%s", len(evs), r.stdout, r.stderr)
	}
	got := map[string]int{}
	for _, e := range evs {
		got[e.ID]++
	}
	for _, id := range []string{id1, id2, id3} {
		if got[id] != 1 {
			t.Errorf("event %s shown %d times, want once:\n%s", id, got[id], r.stdout)
		}
	}
	for _, w := range []string{"unreachable", "waiting for it", "answers again"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr does not say %q:\n%s\nstdout:\n%s", w, r.stderr, r.stdout)
		}
	}
}

// A misconfiguration is not waited for: wrong credentials fail at once.
func TestTailFailsFastOnWrongPassword(t *testing.T) {
	t.Parallel()
	_, _, global := setup(t)
	opts, err := redis.ParseURL(redistest.URL())
	if err != nil {
		t.Fatal(err)
	}
	u := "redis://nobody-eventbus-test:hunter2secret@" + opts.Addr + "/0"
	r := cli(t, "", with(global, "--redis-url", u, "tail", ">")...)
	r.failsWith(t, 1, "credentials refused", "WRONGPASS")
	if strings.Contains(r.stderr, "hunter2secret") {
		t.Errorf("stderr shows the password: %s", r.stderr)
	}
}

// serve starts while Redis is down: it listens, /healthz answers 200 and
// /readyz 503; once Redis answers /readyz turns 200 and ingress publishes.
func TestServeStartsWithoutRedis(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	opts, err := redis.ParseURL(redistest.URL())
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.New(opts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	p.SetRefusing(true)
	u := strings.Replace(redistest.URL(), opts.Addr, p.Addr(), 1)
	const apiKey = "test-key-0123456789abcdef"
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, with(global, "--redis-url", u, "serve", "--listen", "127.0.0.1:0")...)
	cmd.Env = childEnv("EVENTBUS_JWT_SECRET=0123456789abcdef0123456789abcdef-secret", "EVENTBUS_API_KEYS="+apiKey)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() })
	addrRe := regexp.MustCompile(`listening on (http://[0-9.]+:[0-9]+)`)
	var base string
	var log strings.Builder
	sc := bufio.NewScanner(stderr)
	for base == "" && sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
			base = m[1]
		}
	}
	if base == "" {
		t.Fatalf("serve did not start listening while Redis was down; stderr:\n%s", log.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	if !strings.Contains(log.String(), "unreachable") {
		t.Errorf("serve did not say Redis is unreachable:\n%s", log.String())
	}
	status := func(path string) int {
		resp, err := checkedClient(t).Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status("/healthz"); got != http.StatusOK {
		t.Errorf("/healthz while Redis is down: %d, want 200 (live)", got)
	}
	if got := status("/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz while Redis is down: %d, want 503", got)
	}
	p.SetRefusing(false)
	for status("/readyz") != http.StatusOK {
		select {
		case <-ctx.Done():
			t.Fatal("/readyz never turned 200 after Redis answered")
		case <-time.After(50 * time.Millisecond):
		}
	}
	body := `{"specversion":"1.0","id":"e-late","source":"curl","type":"photo.uploaded","data":{"photoId":"p-1"}}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := checkedClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/events after Redis answered: %d, want 202", resp.StatusCode)
	}
	if n := c.XLen(ctx, prefix+"photo.uploaded").Val(); n != 1 {
		t.Errorf("stream holds %d events after ingress, want 1", n)
	}
}
