package typescript_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/internal/redistest"
)

const browserSecret = "browser-test-secret-0123456789abcdef"

// chromiumPath returns the Chromium binary (EVENTBUS_CHROMIUM, or chromium
// / chromium-browser on PATH). Without one the test fails: the browser
// client has no other test against a real browser.
func chromiumPath(t *testing.T) string {
	if p := os.Getenv("EVENTBUS_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("Chromium not found (chromium or chromium-browser on PATH, or EVENTBUS_CHROMIUM): " +
		"the BrowserClient test needs it. Install it with `apt-get install chromium` (.ci/run does).")
	return ""
}

// browserState is the page's window.state (test/browser/index.html).
type browserState struct {
	Events []struct {
		ID, Type, LastEventID string
		N                     int
		Bytes                 []int
		IsBytes               bool
	}
	Gaps []struct {
		LastEventID, Since, OldestID, Message string
	}
	Errors []string
	Opens  int
	Tokens int
}

// driver is test/browser/drive.mjs: headless Chromium behind playwright-core.
type driver struct {
	t     *testing.T
	stdin io.WriteCloser
	out   chan string
}

func newDriver(t *testing.T) *driver {
	if _, err := os.Stat("node_modules/playwright-core"); err != nil {
		t.Fatalf("playwright-core is not installed in clients/typescript: run `make ts-build` (or npm ci there): %v", err)
	}
	cmd := exec.Command("node", "test/browser/drive.mjs")
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromiumPath(t), "USER_DATA_DIR="+t.TempDir())
	cmd.Stderr = &testWriter{t: t}
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	d := &driver{t: t, stdin: stdin, out: make(chan string)}
	go func() {
		defer close(d.out)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			d.out <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = stdin.Close() // the driver closes Chromium and exits at EOF
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return d
}

// do sends one command and returns the page state; a failed command fails the test.
func (d *driver) do(cmd map[string]any) browserState {
	d.t.Helper()
	b, err := json.Marshal(cmd)
	require.NoError(d.t, err)
	_, err = d.stdin.Write(append(b, '\n'))
	require.NoError(d.t, err)
	var line string
	select {
	case l, ok := <-d.out:
		require.True(d.t, ok, "the browser driver exited (see its stderr above)")
		line = l
	case <-time.After(60 * time.Second):
		d.t.Fatalf("the browser driver did not answer %s within 60s", b)
	}
	var ans struct {
		OK    bool
		Error string
		State browserState
	}
	require.NoError(d.t, json.Unmarshal([]byte(line), &ans), line)
	require.Truef(d.t, ans.OK, "browser: %s: %s\npage state: %+v", b, ans.Error, ans.State)
	return ans.State
}

func (d *driver) wait(expr string) browserState {
	d.t.Helper()
	return d.do(map[string]any{"cmd": "wait", "expr": expr, "timeoutMs": 30000})
}

type testWriter struct {
	t  *testing.T
	mu sync.Mutex
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// gatewayHarness runs the real gateway on one fixed loopback address, stops
// it and starts a new one there (a restart), serving the test page, the
// package's ESM build and a token endpoint.
type gatewayHarness struct {
	t    *testing.T
	b    *bus.Bus
	addr string

	mu       sync.Mutex
	issued   []string    // tokens handed out by /test/token, in order
	requests []streamReq // GET /v1/stream requests, in order
	ttl      func(n int) time.Duration

	g      *gateway.Gateway
	srv    *http.Server
	runErr chan error
}

type streamReq struct{ token, lastEventID string }

func (h *gatewayHarness) token(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	n := len(h.issued)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "rooms": []string{"lobby"}, "jti": fmt.Sprint(n),
		"exp": time.Now().Add(h.ttl(n)).Unix(),
	}).SignedString([]byte(browserSecret))
	if err == nil {
		h.issued = append(h.issued, tok)
	}
	h.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, tok)
}

func (h *gatewayHarness) start() {
	t := h.t
	t.Helper()
	page, err := os.ReadFile("test/browser/index.html")
	require.NoError(t, err)
	g, err := gateway.New(h.b, gateway.Config{
		Auth:              gateway.AuthConfig{HMACSecret: []byte(browserSecret)},
		Ingress:           gateway.IngressConfig{APIKeys: []string{"browser-test-api-key-0123"}},
		HeartbeatInterval: 300 * time.Millisecond, // id-only messages move Last-Event-ID too
		ReadBlock:         100 * time.Millisecond,
		CloseTimeout:      5 * time.Second,
	}, watermill.NopLogger{})
	require.NoError(t, err)
	g.Mount("GET /{$}", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	}))
	g.Mount("GET /client/", http.StripPrefix("/client/", http.FileServer(http.Dir("dist/esm"))))
	g.Mount("GET /test/token", http.HandlerFunc(h.token))
	var ln net.Listener
	require.Eventually(t, func() bool { ln, err = net.Listen("tcp", h.addr); return err == nil }, 10*time.Second, 50*time.Millisecond,
		"listen on %s again", h.addr)
	h.addr = ln.Addr().String()
	handler := g.Handler()
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == gateway.StreamPath && r.Header.Get("X-Test-Probe") == "" {
			h.mu.Lock()
			h.requests = append(h.requests, streamReq{r.URL.Query().Get("access_token"), r.Header.Get("Last-Event-ID")})
			h.mu.Unlock()
		}
		handler.ServeHTTP(w, r)
	})}
	h.g = g
	h.runErr = make(chan error, 1)
	go func() { h.runErr <- g.Run(context.Background()) }()
	select {
	case <-g.Running():
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not start running")
	}
	go func() { _ = h.srv.Serve(ln) }()
}

func (h *gatewayHarness) stop() {
	h.t.Helper()
	if h.g == nil {
		return
	}
	// The listener and every connection first, as when the process dies:
	// no request reaches a gateway that is shutting down.
	require.NoError(h.t, h.srv.Close())
	require.NoError(h.t, h.g.Close())
	require.ErrorIs(h.t, <-h.runErr, gateway.ErrGatewayClosed)
	h.g = nil
}

func (h *gatewayHarness) streamRequests() []streamReq {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]streamReq(nil), h.requests...)
}

func (h *gatewayHarness) tokens() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.issued...)
}

// TestBrowserClient runs the package's BrowserClient (its ESM build, as a
// page loads it) in headless Chromium against the real gateway: typed and
// pattern handlers, data_base64, the user's and the room's events only; the
// gateway ending the stream when the first token expires (getToken gives a
// new one, Last-Event-ID resumes); a gateway restart (nothing lost, nothing
// repeated); a restart after the push stream was trimmed past the browser's
// position (onGap); close.
func TestBrowserClient(t *testing.T) {
	if _, err := os.Stat("dist/esm/browser.js"); err != nil {
		t.Fatalf("the TypeScript client is not built: run `make ts-build`: %v", err)
	}
	d := newDriver(t)
	rdb := redistest.Client(t)
	prefix := redistest.Prefix(t)
	b, err := bus.New(bus.Config{Client: rdb, ServiceName: "browser-test", StreamPrefix: prefix}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	const firstTTL = 2 * time.Second
	h := &gatewayHarness{t: t, b: b, addr: "127.0.0.1:0", ttl: func(n int) time.Duration {
		if n == 0 {
			return firstTTL // expires before the first restart
		}
		return time.Hour
	}}
	h.start()
	t.Cleanup(h.stop)

	ctx := context.Background()
	pub := b.Publisher()
	publish := func(typ string, n int, opt bus.Option) string {
		t.Helper()
		id, err := bus.Publish(ctx, pub, typ, map[string]int{"n": n}, opt)
		require.NoError(t, err)
		return id
	}
	publish("chat.message", 0, bus.WithRoom("lobby")) // before the page connects: not shown

	d.do(map[string]any{"cmd": "open", "url": "http://" + h.addr + "/"})
	d.wait("window.state && state.opens === 1")
	require.Equal(t, 1, h.g.Clients())

	// Live: what the token's user and rooms get, to the handlers that match.
	raw := message.NewMessage(watermill.NewUUID(), []byte{0, 1, 2, 255})
	raw.Metadata.Set(bus.AttrDataContentType, "application/octet-stream")
	raw.Metadata.Set(bus.AttrRoom, "lobby")
	want := []string{publish("chat.message", 1, bus.WithRoom("lobby"))}
	publish("chat.message", 2, bus.WithRoom("secret"))   // a room the token does not grant
	publish("user.notified", 3, bus.WithUser("bob"))     // another user
	publish("system.notice", 4, bus.WithBroadcast())     // delivered, but no handler matches
	publish("chat.room.created", 5, bus.WithBroadcast()) // chat.* is one token: no match
	want = append(want, publish("user.notified", 6, bus.WithUser("alice")))
	require.NoError(t, pub.Publish("photo.raw", raw))
	want = append(want, raw.UUID)
	s := d.wait("state.events.length >= 3")
	require.Equal(t, want, eventIDs(s))
	assert.Equal(t, []int{0, 1, 2, 255}, s.Events[2].Bytes)
	assert.True(t, s.Events[2].IsBytes, "data_base64 decoded to a Uint8Array")
	assert.Equal(t, 1, s.Events[0].N)
	assert.Equal(t, "user.notified", s.Events[1].Type)

	// The first token expires: the gateway ends the stream (its token expired),
	// and a reconnect with that token would be refused for good, so getToken
	// must give the new one. (The test waits for that reconnect before it
	// restarts the gateway: a restart racing it would make the number of
	// connects depend on timing.)
	first := h.tokens()[0]
	require.Eventually(t, func() bool { return streamStatus(t, h.addr, first) == http.StatusUnauthorized },
		firstTTL+5*time.Second, 100*time.Millisecond, "the first token never expired")
	s = d.wait("state.opens === 2")
	require.Equal(t, want, eventIDs(s), "after the reconnect with a fresh token: nothing repeated")
	reqs := h.streamRequests()
	require.Len(t, reqs, 2, "one stream request per connect: %+v", reqs)
	assert.Empty(t, reqs[0].lastEventID)
	assert.NotEmpty(t, reqs[1].lastEventID, "the reconnect resumes with Last-Event-ID")
	assert.NotEqual(t, first, reqs[1].token, "the reconnect used a fresh token from getToken")
	assert.GreaterOrEqual(t, s.Tokens, 2)

	// Restart 1: what is published while the gateway is down arrives once, in order.
	h.stop()
	want = append(want, publish("chat.message", 7, bus.WithRoom("lobby"))) // while the gateway is down
	publish("user.notified", 8, bus.WithUser("bob"))
	want = append(want, publish("user.notified", 9, bus.WithUser("alice")))
	h.start()
	s = d.wait("state.opens === 3 && state.events.length >= 5")
	want = append(want, publish("chat.message", 10, bus.WithRoom("lobby"))) // live after the resume
	s = d.wait("state.events.length >= 6")
	require.Equal(t, want, eventIDs(s), "after the restart: every event once, in order")
	assert.Empty(t, s.Gaps)
	reqs = h.streamRequests()
	require.Len(t, reqs, 3, "one stream request per connect: %+v", reqs)
	assert.NotEmpty(t, reqs[2].lastEventID, "the reconnect after the restart resumes with Last-Event-ID")
	assert.NotEqual(t, first, reqs[2].token)

	// Restart 2 with entries trimmed past the browser's position: a gap.
	h.stop()
	lost := publish("chat.message", 11, bus.WithRoom("lobby"))
	kept := publish("chat.message", 12, bus.WithRoom("lobby"))
	require.NoError(t, rdb.XTrimMaxLen(ctx, b.Config().PushKey(), 1).Err())
	h.start()
	s = d.wait("state.gaps.length >= 1 && state.events.length >= 7")
	reqs = h.streamRequests()
	require.Len(t, reqs, 4, "%+v", reqs)
	require.Len(t, s.Gaps, 1)
	assert.Equal(t, reqs[3].lastEventID, s.Gaps[0].LastEventID, "the gap starts where the browser was")
	assert.NotEmpty(t, s.Gaps[0].OldestID)
	ids := eventIDs(s)
	assert.Equal(t, kept, ids[len(ids)-1], "what is retained is replayed after the gap")
	assert.NotContains(t, ids, lost)
	assert.Len(t, ids, 7)

	// close: the stream ends and the client does not reconnect.
	d.do(map[string]any{"cmd": "eval", "expr": "client.close()"})
	require.Eventually(t, func() bool { return h.g.Clients() == 0 }, 10*time.Second, 20*time.Millisecond)
	require.Len(t, h.streamRequests(), 4)
}

func eventIDs(s browserState) []string {
	ids := make([]string, len(s.Events))
	for i, e := range s.Events {
		ids[i] = e.ID
	}
	return ids
}

// streamStatus opens GET /v1/stream with tok and returns the status.
func streamStatus(t *testing.T, addr, tok string) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+gateway.StreamPath+"?access_token="+tok, nil)
	require.NoError(t, err)
	req.Header.Set("X-Test-Probe", "1") // not one of the browser's requests
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = res.Body.Close()
	return res.StatusCode
}
