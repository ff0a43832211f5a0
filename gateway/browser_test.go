package gateway_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

// examplePage is the browser example's page, which this test drives.
const examplePage = "../examples/browser/index.html"

// findChromium returns the path of a Chromium binary, or "". EVENTBUS_CHROMIUM
// names one explicitly.
func findChromium() string {
	if p := os.Getenv("EVENTBUS_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// A real browser opens the example page, whose EventSource connects with
// the token in access_token; events published after it connected show up
// in its DOM, and events for another user or a room it may not join do not.
//
// Without Chromium on PATH the test passes with a loud log, unless CI=true
// or EVENTBUS_REQUIRE_BROWSER=1, where it fails: the one place this module's
// tests depend on a tool that is not Go or Redis (see docs/gateway.md).
func TestBrowserEventSource(t *testing.T) {
	chromium := findChromium()
	if chromium == "" {
		msg := "Chromium not found on PATH (chromium or chromium-browser; or set EVENTBUS_CHROMIUM): " +
			"the browser test did NOT run. Install it (apt-get install chromium) to run it."
		if os.Getenv("CI") == "true" || os.Getenv("EVENTBUS_REQUIRE_BROWSER") == "1" {
			t.Fatal(msg + " It is required here (CI=true or EVENTBUS_REQUIRE_BROWSER=1).")
		}
		t.Log("!!!!!!!! " + msg + " !!!!!!!!")
		return
	}
	page, err := os.ReadFile(examplePage)
	require.NoError(t, err)

	e := newEnv(t, envOpts{})
	e.check.Ignore("/") // the test's page, not part of the API
	e.gw.Mount("GET /{$}", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	}))
	// Published before the browser connects: not shown (live from connect).
	e.publish("chat.message", map[string]any{"text": "before-connect"}, bus.WithRoom("lobby"))

	published := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(45 * time.Second)
		for e.gw.Clients() == 0 {
			if time.Now().After(deadline) {
				published <- nil
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		ctx := context.Background()
		pub := e.bus.Publisher()
		for _, ev := range []struct {
			typ, text string
			opt       bus.Option
		}{
			{"chat.message", "lobby-one", bus.WithRoom("lobby")},
			{"chat.message", "secret-room", bus.WithRoom("secret")},
			{"user.notified", "for-alice", bus.WithUser("alice")},
			{"user.notified", "for-bob", bus.WithUser("bob")},
			{"system.notice", "for-everyone", bus.WithBroadcast()},
			{"photo.uploaded", "lobby-two", bus.WithRoom("lobby")},
		} {
			if _, err := bus.Publish(ctx, pub, ev.typ, map[string]any{"text": ev.text}, ev.opt); err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()

	tok := e.token("alice", "lobby")
	url := e.srv.URL + "/?rooms=lobby,secret&expect=4#token=" + tok
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(),
		// Virtual time stands still while a fetch is pending: the page
		// closes its EventSource after the expected events, and the DOM
		// is dumped once the budget has then run out.
		"--virtual-time-budget=5000",
		"--dump-dom", url)
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	if ctx.Err() != nil {
		t.Fatalf("chromium did not finish within 60s (the page never got its 4 events?); stderr tail:\n%s", tail(stderr.String(), 2000))
	}
	require.NoErrorf(t, err, "chromium: stderr tail:\n%s", tail(stderr.String(), 2000))
	require.NoError(t, <-published)
	t.Logf("chromium took %s", time.Since(start).Round(time.Millisecond))

	dom := string(out)
	body := dom[strings.Index(dom, "<body"):]
	require.Containsf(t, body, `<p id="done">received 4 events</p>`, "DOM:\n%s", body)
	for _, want := range []string{"lobby-one", "for-alice", "for-everyone", "lobby-two"} {
		assert.Contains(t, body, want)
	}
	ul := body[:strings.Index(body, "</ul>")]
	for _, never := range []string{"before-connect", "secret-room", "for-bob"} {
		assert.NotContains(t, ul, never)
	}
	assert.Less(t, strings.Index(ul, "lobby-one"), strings.Index(ul, "lobby-two"), "in publish order")
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
