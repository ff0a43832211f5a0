package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// tailEvent is a line of tail's JSON output.
type tailEvent struct {
	SpecVersion string          `json:"specversion"`
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Source      string          `json:"source"`
	Time        time.Time       `json:"time"`
	Subject     string          `json:"subject"`
	Room        string          `json:"room"`
	StreamID    string          `json:"streamid"`
	Data        json.RawMessage `json:"data"`
}

func parseTail(t *testing.T, out string) []tailEvent {
	t.Helper()
	var evs []tailEvent
	for _, l := range lines(out) {
		var ev tailEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("tail output line is not JSON (%v): %s", err, l)
		}
		evs = append(evs, ev)
	}
	return evs
}

func publish(t *testing.T, global []string, typ, data string, flags ...string) string {
	t.Helper()
	r := cli(t, "", with(global, append([]string{"publish", typ, data}, flags...)...)...).ok(t)
	return strings.TrimSpace(r.stdout)
}

func TestTailReplaysWhatWasPublished(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	want := []struct{ typ, data, id string }{
		{typ: "photo.uploaded", data: `{"photoId":"p-1"}`},
		{typ: "photo.processing.completed", data: `{"photoId":"p-1","ok":true}`},
		{typ: "photo.uploaded", data: `{"photoId":"p-2"}`},
	}
	for i := range want {
		want[i].id = publish(t, global, want[i].typ, want[i].data, "--subject", "s-1")
	}
	publish(t, global, "user.created", `{}`) // does not match the pattern

	// stdout is a pipe: JSON lines.
	r := cli(t, "", with(global, "tail", "photo.>", "--from", "0", "--count", "3")...).ok(t)
	evs := parseTail(t, r.stdout)
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d:\n%s", len(evs), len(want), r.stdout)
	}
	for i, ev := range evs {
		w := want[i]
		if ev.ID != w.id || ev.Type != w.typ || string(ev.Data) != w.data || ev.Subject != "s-1" ||
			ev.SpecVersion != "1.0" || ev.Source != "eventbus-cli" || ev.StreamID == "" || ev.Time.IsZero() {
			t.Errorf("event %d = %+v, want id %s type %s data %s subject s-1 (publish order)", i, ev, w.id, w.typ, w.data)
		}
	}

	// --from the streamid of the first event resumes after it.
	r = cli(t, "", with(global, "tail", "photo.>", "--from", evs[0].StreamID, "--count", "2")...).ok(t)
	if got := parseTail(t, r.stdout); len(got) != 2 || got[0].ID != want[1].id || got[1].ID != want[2].id {
		t.Errorf("--from %s gave %+v, want the 2nd and 3rd events", evs[0].StreamID, got)
	}

	// A duration replays the recent past.
	r = cli(t, "", with(global, "tail", "user.created", "--from", "10m", "--count", "1", "--json")...).ok(t)
	if got := parseTail(t, r.stdout); len(got) != 1 || got[0].Type != "user.created" {
		t.Errorf("--from 10m gave %+v, want the user.created event", got)
	}

	// tail is fan-out: it created no consumer group.
	for _, key := range []string{"photo.uploaded", "photo.processing.completed", "user.created"} {
		if groups := c.XInfoGroups(t.Context(), prefix+key).Val(); len(groups) != 0 {
			t.Errorf("%s has consumer groups %v after tail, want none", key, groups)
		}
	}
}

func TestTailFollowsNewTypes(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// tail starts before any stream exists; only events published after it
	// starts are shown, including those of types it discovers later.
	publish(t, global, "order.old", `{"n":0}`)
	// A client name to see when tail is blocked in XREAD, that is, started.
	name := "tail-" + strings.Trim(strings.ReplaceAll(prefix, ":", "-"), "-")
	sep := "?"
	if strings.Contains(redistest.URL(), "?") {
		sep = "&"
	}
	url := redistest.URL() + sep + "client_name=" + name
	done := make(chan result, 1)
	go func() {
		done <- cliCtx(ctx, t, "", with(global, "--redis-url", url, "tail", "order.*", "--count", "2", "--refresh", "100ms")...)
	}()
	for started := false; !started; {
		select {
		case r := <-done:
			t.Fatalf("tail ended before anything was published: exit %d\n%s", r.code, r.stderr)
		case <-ctx.Done():
			t.Fatal("tail did not start")
		case <-time.After(20 * time.Millisecond):
		}
		for l := range strings.SplitSeq(c.ClientList(ctx).Val(), "\n") {
			if strings.Contains(l, " name="+name+" ") && strings.Contains(l, " cmd=xread") {
				started = true
			}
		}
	}
	id1 := publish(t, global, "order.created", `{"n":1}`)
	id2 := publish(t, global, "order.paid", `{"n":2}`)
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("tail did not exit after --count events")
	}
	r.ok(t)
	evs := parseTail(t, r.stdout)
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2:\n%s", len(evs), r.stdout)
	}
	got := map[string]bool{evs[0].ID: true, evs[1].ID: true}
	if !got[id1] || !got[id2] {
		t.Errorf("tail printed %+v, want the events %s and %s published after it started", evs, id1, id2)
	}
}

// startRedisServer runs a redis-server of the test's own on port (no
// persistence), stopped at cleanup; it returns the process.
func startRedisServer(t *testing.T, port int) *exec.Cmd {
	t.Helper()
	srv := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no")
	if err := srv.Start(); err != nil {
		t.Fatalf("start redis-server (apt-get install redis-server): %v", err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
	})
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), MaxRetries: -1})
	defer c.Close()
	for i := 0; c.Ping(t.Context()).Err() != nil; i++ {
		if i == 100 {
			t.Fatalf("redis-server on port %d did not answer PING within 5 s", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return srv
}

// TestTailSurvivesRedisRestart: tail follows on through Redis going away
// (kill -9) and coming back, says so on stderr, and prints what is
// published after the restart.
func TestTailSurvivesRedisRestart(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	srv := startRedisServer(t, port)
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	global := []string{"--redis-url", url}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	id1 := publish(t, global, "order.created", `{"n":1}`)
	done := make(chan result, 1)
	go func() {
		done <- cliCtx(ctx, t, "", with(global, "--redis-url", url+"?client_name=tail-restart", "tail", "order.created", "--from", "0", "--count", "2", "--refresh", "100ms")...)
	}()
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), MaxRetries: -1})
	defer c.Close()
	for started := false; !started; {
		select {
		case r := <-done:
			t.Fatalf("tail ended early: exit %d\n%s", r.code, r.stderr)
		case <-ctx.Done():
			t.Fatal("tail did not start")
		case <-time.After(20 * time.Millisecond):
		}
		// Started = past its first PING (a Redis unreachable at the start
		// ends tail at once): reading.
		for l := range strings.SplitSeq(c.ClientList(ctx).Val(), "\n") {
			started = started || (strings.Contains(l, " name=tail-restart ") && strings.Contains(l, " cmd=xread"))
		}
	}
	_ = srv.Process.Kill()
	_ = srv.Wait()
	// An outage longer than go-redis's own retries of a command (3, with
	// backoff up to 512ms), so that tail itself meets the error.
	time.Sleep(2500 * time.Millisecond)
	startRedisServer(t, port)
	id2 := publish(t, global, "order.created", `{"n":2}`)

	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("tail did not print the event published after the restart")
	}
	r.ok(t)
	evs := parseTail(t, r.stdout)
	if len(evs) != 2 || evs[0].ID != id1 || evs[1].ID != id2 {
		t.Errorf("tail printed %+v, want %s then %s", evs, id1, id2)
	}
	for _, want := range []string{"waiting for it", "Redis answers again"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
		}
	}
}
