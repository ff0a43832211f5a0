package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/internal/openapicheck"
	"github.com/shared-infra/eventbus/internal/redistest"
)

const testAPIKey = "test-api-key-0123456789"

// env is a gateway on its own bus (own key prefix) behind an httptest
// server, with its push-stream reader running.
type env struct {
	t   *testing.T
	bus *bus.Bus
	gw  *gateway.Gateway
	srv *httptest.Server
	rdb redis.UniversalClient
	// check validates the traffic through srv (nil when the test opted out).
	check *openapicheck.Checker

	paused bool // dial does not start reading
}

type envOpts struct {
	gw     func(*gateway.Config)
	bus    func(*bus.Config)
	noRun  bool
	client redis.UniversalClient   // the bus's client; default the test Redis
	logger watermill.LoggerAdapter // the gateway's; default none
	// uncheckedBecause, when set, says why this test's traffic is not
	// validated against the OpenAPI document (it mounts handlers of its own
	// that the document does not describe). By default every request and
	// response through srv is validated (internal/openapicheck).
	uncheckedBecause string
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	rdb := redistest.Client(t)
	bc := bus.Config{ServiceName: "gw-test", Client: rdb, StreamPrefix: redistest.Prefix(t)}
	if o.client != nil {
		bc.Client = o.client
	}
	if o.bus != nil {
		o.bus(&bc)
	}
	b, err := bus.New(bc, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })

	gc := gateway.Config{
		Auth:              gateway.AuthConfig{HMACSecret: testSecret},
		Ingress:           gateway.IngressConfig{APIKeys: []string{testAPIKey}},
		IngressJWT:        true,
		HeartbeatInterval: time.Hour, // tests that want heartbeats set it
		ReadBlock:         100 * time.Millisecond,
		CloseTimeout:      5 * time.Second,
	}
	if o.gw != nil {
		o.gw(&gc)
	}
	g, err := gateway.New(b, gc, o.logger)
	require.NoError(t, err)
	var h http.Handler = g.Handler()
	var check *openapicheck.Checker
	if o.uncheckedBecause == "" {
		check = openapicheck.New(t, gateway.OpenAPI())
		h = check.Handler(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { _ = g.Close() }) // runs before srv.Close: streams end first
	if !o.noRun {
		ctx, cancel := context.WithCancel(context.Background())
		runErr := make(chan error, 1)
		go func() { runErr <- g.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			select {
			case err := <-runErr:
				if err != nil && err != gateway.ErrGatewayClosed {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("Run did not return")
			}
		})
		select {
		case <-g.Running():
		case <-time.After(5 * time.Second):
			t.Fatal("gateway did not start running")
		}
	}
	return &env{t: t, bus: b, gw: g, srv: srv, rdb: rdb, check: check}
}

// token signs a browser JWT for sub with the given rooms.
func (e *env) token(sub string, rooms ...string) string {
	e.t.Helper()
	return sign(e.t, jwt.SigningMethodHS256, testSecret, claims(sub, jwt.MapClaims{"rooms": rooms}))
}

// post sends body to the ingress endpoint with the API key and headers.
func (e *env) post(contentType, body string, headers map[string]string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+gateway.EventsPath, strings.NewReader(body))
	require.NoError(e.t, err)
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp, b
}

// publish publishes through the bus with the given addressing.
func (e *env) publish(typ string, data any, opts ...bus.Option) string {
	e.t.Helper()
	id, err := bus.Publish(context.Background(), e.bus.Publisher(), typ, data, opts...)
	require.NoError(e.t, err)
	return id
}

// entries returns the entries of the stream of type typ (or of key, when
// typ starts with "key:").
func (e *env) entries(key string) []redis.XMessage {
	e.t.Helper()
	xs, err := e.rdb.XRange(context.Background(), key, "-", "+").Result()
	require.NoError(e.t, err)
	return xs
}

func (e *env) typeKey(typ string) string { return e.bus.Config().StreamKey(typ) }
func (e *env) pushKey() string           { return e.bus.Config().PushKey() }

// requireNothingPublished checks that none of the given types' streams nor
// the push stream exist.
func (e *env) requireNothingPublished(types ...string) {
	e.t.Helper()
	keys := []string{e.pushKey()}
	for _, typ := range types {
		keys = append(keys, e.typeKey(typ))
	}
	for _, k := range keys {
		n, err := e.rdb.Exists(context.Background(), k).Result()
		require.NoError(e.t, err)
		require.Zerof(e.t, n, "stream %s exists: something was published", k)
	}
}

// sseMsg is one thing read from an event stream: an event (ID, Event,
// Data), an id-only message (ID set, IDOnly), or a comment.
type sseMsg struct {
	ID, Event, Data string
	IDOnly          bool
	Comment         string
	IsComment       bool
	// Retry is the value of a "retry:" field (-1 when none); a message
	// with only that field is a reconnection hint, skipped by next unless
	// comments are wanted.
	Retry   int
	IsRetry bool
}

// sseConn is an open stream read by a goroutine into msgs.
type sseConn struct {
	t      *testing.T
	resp   *http.Response
	msgs   chan sseMsg
	done   chan struct{} // closed when the body ends
	cancel context.CancelFunc
}

// connect opens GET /v1/stream with the token in access_token and the
// given rooms and Last-Event-ID (either may be empty). It fails the test
// unless the answer is 200.
func (e *env) connect(tok, rooms, lastID string) *sseConn {
	e.t.Helper()
	c, resp := e.dial(tok, rooms, lastID, nil)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("GET /v1/stream: %d %s", resp.StatusCode, b)
	}
	return c
}

// dial opens the stream and returns the connection and response whatever
// the status. mutate may change the query.
func (e *env) dial(tok, rooms, lastID string, mutate func(url.Values, http.Header)) (*sseConn, *http.Response) {
	e.t.Helper()
	q := url.Values{}
	if tok != "" {
		q.Set(gateway.AccessTokenParam, tok)
	}
	if rooms != "" {
		q.Set(gateway.RoomsParam, rooms)
	}
	h := http.Header{}
	if lastID != "" {
		h.Set("Last-Event-ID", lastID)
	}
	if mutate != nil {
		mutate(q, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+gateway.StreamPath+"?"+q.Encode(), nil)
	require.NoError(e.t, err)
	req.Header = h
	client := http.DefaultClient
	if e.paused {
		client = tinyWindowClient
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		e.t.Fatalf("GET /v1/stream: %v", err)
	}
	c := &sseConn{t: e.t, resp: resp, msgs: make(chan sseMsg, 100_000), done: make(chan struct{}), cancel: cancel}
	e.t.Cleanup(c.close)
	if resp.StatusCode != http.StatusOK {
		close(c.done)
	} else if !e.paused {
		go c.read()
	}
	return c, resp
}

// connectPaused is connect without reading the response: the browser is
// stuck. Call start to read.
func (e *env) connectPaused(tok string) *sseConn {
	e.t.Helper()
	e.paused = true
	defer func() { e.paused = false }()
	return e.connect(tok, "", "")
}

func (c *sseConn) start() { go c.read() }

// tinyWindowClient's connections have a 4 KiB receive buffer, so that a
// browser that stops reading stops the server's writes quickly.
var tinyWindowClient = &http.Client{Transport: &http.Transport{
	DisableKeepAlives: true,
	DialContext: (&net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}).DialContext,
}}

func (c *sseConn) close() {
	c.cancel()
	_ = c.resp.Body.Close()
}

// read parses the event stream (the format of the HTML standard, enough of
// it for these tests).
func (c *sseConn) read() {
	defer close(c.done)
	sc := bufio.NewScanner(c.resp.Body)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	cur := sseMsg{Retry: -1}
	var data []string
	var any bool
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if any {
				cur.Data = strings.Join(data, "\n")
				cur.IDOnly = data == nil && cur.Event == "" && cur.ID != ""
				cur.IsRetry = data == nil && cur.Event == "" && cur.ID == "" && cur.Retry >= 0
				c.msgs <- cur
			}
			cur, data, any = sseMsg{Retry: -1}, nil, false
			continue
		}
		if strings.HasPrefix(line, ":") {
			c.msgs <- sseMsg{IsComment: true, Comment: strings.TrimPrefix(strings.TrimPrefix(line, ":"), " ")}
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		any = true
		switch name {
		case "id":
			cur.ID = value
		case "event":
			cur.Event = value
		case "data":
			data = append(data, value)
		case "retry":
			if n, err := strconv.Atoi(value); err == nil {
				cur.Retry = n
			}
		}
	}
}

// next returns the next message, comments skipped unless comments is set.
func (c *sseConn) next(timeout time.Duration, comments bool) (sseMsg, bool) {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-c.msgs:
			if (m.IsComment || m.IsRetry) && !comments {
				continue
			}
			return m, true
		case <-c.done:
			select {
			case m := <-c.msgs:
				if (m.IsComment || m.IsRetry) && !comments {
					continue
				}
				return m, true
			default:
				return sseMsg{}, false
			}
		case <-deadline:
			return sseMsg{}, false
		}
	}
}

// events reads events (not comments, not id-only messages) until one of
// type untilType arrives, and returns those before it.
func (c *sseConn) eventsUntil(untilType string, timeout time.Duration) []sseMsg {
	c.t.Helper()
	var out []sseMsg
	end := time.Now().Add(timeout)
	for {
		m, ok := c.next(time.Until(end), false)
		if !ok {
			c.t.Fatalf("stream: no %q event within %s; got %d events before: %v", untilType, timeout, len(out), out)
		}
		if m.IDOnly {
			continue
		}
		if m.Event == untilType {
			return out
		}
		out = append(out, m)
	}
}

// ceJSON decodes the data of an SSE event (CloudEvents JSON).
func ceJSON(t *testing.T, m sseMsg) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoErrorf(t, json.Unmarshal([]byte(m.Data), &v), "data %q", m.Data)
	return v
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
