package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// recordLogger keeps every log line, safe for concurrent use.
type recordLogger struct {
	mu     *sync.Mutex
	lines  *[]logLine
	fields watermill.LogFields
}

type logLine struct {
	msg    string
	fields watermill.LogFields
}

func newRecordLogger() recordLogger {
	return recordLogger{mu: &sync.Mutex{}, lines: new([]logLine)}
}

func (l recordLogger) log(msg string, f watermill.LogFields) {
	l.mu.Lock()
	defer l.mu.Unlock()
	*l.lines = append(*l.lines, logLine{msg, l.fields.Add(f)})
}
func (l recordLogger) Error(msg string, err error, f watermill.LogFields) {
	l.log(msg, f.Add(watermill.LogFields{"err": err}))
}
func (l recordLogger) Info(msg string, f watermill.LogFields)  { l.log(msg, f) }
func (l recordLogger) Debug(msg string, f watermill.LogFields) { l.log(msg, f) }
func (l recordLogger) Trace(msg string, f watermill.LogFields) { l.log(msg, f) }
func (l recordLogger) With(f watermill.LogFields) watermill.LoggerAdapter {
	l.fields = l.fields.Add(f)
	return l
}

// find returns the lines with message msg logged by watermill-http.
func (l recordLogger) find(msg string) []watermill.LogFields {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []watermill.LogFields
	for _, line := range *l.lines {
		if line.msg == msg && line.fields["provider"] == "http" {
			out = append(out, line.fields)
		}
	}
	return out
}

// Ingress requests go through watermill-http's Subscriber: its own log
// lines show the request acknowledged with the status the gateway answers,
// or refused by the UnmarshalMessageFunc.
func TestIngressThroughWatermillHTTPSubscriber(t *testing.T) {
	logs := newRecordLogger()
	e := newEnv(t, envOpts{logger: logs})

	resp, b := e.post(gateway.ContentTypeStructured, `{"specversion":"1.0","id":"w1","type":"good.event","source":"s","data":{}}`, nil)
	require.Equal(t, []string{"w1"}, decodeIDs(t, resp, b))
	acked := logs.find("Message acknowledged")
	require.Len(t, acked, 1)
	assert.Equal(t, http.StatusAccepted, acked[0]["http_status_code"])
	assert.Equal(t, gateway.EventsPath, acked[0]["url"])

	resp, b = e.post(gateway.ContentTypeStructured, `{"specversion":"1.0","id":"w2","type":"Bad Type","source":"s"}`, nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "body: %s", b)
	assert.Equal(t, "type", decodeError(t, b).Field)
	assert.Len(t, logs.find("Cannot unmarshal message"), 1)

	// Refused before the route (401): watermill-http never sees it.
	resp, _ = e.post(gateway.ContentTypeStructured, `{}`, map[string]string{"Authorization": ""})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Len(t, logs.find("Cannot unmarshal message"), 1)
	assert.Len(t, logs.find("Sending msg"), 1)
}

// xaddGate holds every XADD (or dedup script, which XADDs) to a stream whose key ends with suffix until
// release is closed; entered is closed when the first one arrives.
type xaddGate struct {
	suffix  string
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func newXAddGate(suffix string) *xaddGate {
	return &xaddGate{suffix: suffix, entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *xaddGate) hold(ctx context.Context, cmds ...redis.Cmder) error {
	for _, c := range cmds {
		args := c.Args()
		key := ""
		switch name := strings.ToLower(fmt.Sprint(args[0])); {
		case name == "xadd" && len(args) > 1:
			key = fmt.Sprint(args[1])
		case (name == "evalsha" || name == "eval") && len(args) > 3: // the publisher's dedup script: KEYS[1] is the stream
			key = fmt.Sprint(args[3])
		}
		if key != "" && strings.HasSuffix(key, g.suffix) {
			g.once.Do(func() { close(g.entered) })
			select {
			case <-g.release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

func (g *xaddGate) DialHook(next redis.DialHook) redis.DialHook { return next }
func (g *xaddGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := g.hold(ctx, cmd); err != nil {
			return err
		}
		return next(ctx, cmd)
	}
}
func (g *xaddGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if err := g.hold(ctx, cmds...); err != nil {
			return err
		}
		return next(ctx, cmds)
	}
}

// gatedEnv is an env whose bus client holds XADDs to "slow.event".
func gatedEnv(t *testing.T) (*env, *xaddGate) {
	t.Helper()
	redistest.Client(t) // fails the test, saying how to start one, if there is no Redis
	opts, err := redis.ParseURL(redistest.URL())
	require.NoError(t, err)
	client := redis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	gate := newXAddGate("slow.event")
	t.Cleanup(func() {
		select {
		case <-gate.release:
		default:
			close(gate.release)
		}
	})
	client.AddHook(gate)
	e := newEnv(t, envOpts{client: client, gw: func(c *gateway.Config) {
		c.PublishTimeout = time.Minute // the gate, not the timeout, decides
		c.CloseTimeout = time.Minute
	}})
	return e, gate
}

type postResult struct {
	status int
	body   []byte
	err    error
}

// postAsync posts a structured event from another goroutine.
func (e *env) postAsync(body string) <-chan postResult {
	out := make(chan postResult, 1)
	go func() {
		req, err := http.NewRequest(http.MethodPost, e.srv.URL+gateway.EventsPath, strings.NewReader(body))
		if err != nil {
			out <- postResult{err: err}
			return
		}
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		req.Header.Set("Content-Type", gateway.ContentTypeStructured)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- postResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		out <- postResult{status: resp.StatusCode, body: b, err: err}
	}()
	return out
}

func awaitPost(t *testing.T, ch <-chan postResult) postResult {
	t.Helper()
	select {
	case r := <-ch:
		require.NoError(t, r.err)
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("the request was not answered")
		return postResult{}
	}
}

// A request whose publish is slow does not hold up the others: each
// message of the Subscriber is handled on its own goroutine.
func TestIngressSlowPublishDoesNotBlockOthers(t *testing.T) {
	e, gate := gatedEnv(t)
	slow := e.postAsync(`{"specversion":"1.0","id":"s1","type":"slow.event","source":"s","data":{}}`)
	<-gate.entered // s1 is inside its publish

	resp, b := e.post(gateway.ContentTypeStructured, `{"specversion":"1.0","id":"f1","type":"fast.event","source":"s","data":{}}`, nil)
	assert.Equal(t, []string{"f1"}, decodeIDs(t, resp, b))

	close(gate.release)
	r := awaitPost(t, slow)
	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.body)
	assert.JSONEq(t, `{"ids":["s1"]}`, string(r.body))
	assert.Len(t, e.entries(e.typeKey("slow.event")), 1)
}

// Close refuses new requests (503) at once, answers the request being
// published, then returns.
func TestIngressClose(t *testing.T) {
	e, gate := gatedEnv(t)
	slow := e.postAsync(`{"specversion":"1.0","id":"c1","type":"slow.event","source":"s","data":{}}`)
	<-gate.entered

	closed := make(chan error, 1)
	go func() { closed <- e.gw.Close() }()
	var resp *http.Response
	var b []byte
	waitFor(t, 10*time.Second, "ingress to refuse requests", func() bool {
		resp, b = e.post(gateway.ContentTypeStructured, `{"specversion":"1.0","id":"late","type":"other.event","source":"s","data":{}}`, nil)
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Contains(t, decodeError(t, b).Message, "shutting down")
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a request was being published", err)
	default:
	}

	close(gate.release)
	r := awaitPost(t, slow)
	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.body)
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
	assert.Len(t, e.entries(e.typeKey("slow.event")), 1)
	require.NoError(t, e.gw.Close(), "Close again")
}

// A gateway closed before any request refuses ingress with 503.
func TestIngressAfterClose(t *testing.T) {
	e := newEnv(t, envOpts{noRun: true})
	require.NoError(t, e.gw.Close())
	resp, b := e.post(gateway.ContentTypeStructured, `{"specversion":"1.0","id":"a1","type":"good.event","source":"s","data":{}}`, nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "body: %s", b)
	e.requireNothingPublished("good.event")
}

// The transport message carries the events byte for byte: an attribute
// that is not UTF-8 (a binary-mode header may hold any byte) arrives as
// it was sent.
func TestIngressTransportKeepsBytes(t *testing.T) {
	e := newEnv(t, envOpts{})
	resp, b := e.post("application/octet-stream", "\xff\x00", map[string]string{
		"ce-specversion": "1.0", "ce-id": "l1", "ce-type": "good.event", "ce-source": "s", "ce-tenant": "caf\xe9",
	})
	require.Equal(t, []string{"l1"}, decodeIDs(t, resp, b))
	xs := e.entries(e.typeKey("good.event"))
	require.Len(t, xs, 1)
	f := fields(t, xs[0])
	assert.Equal(t, "caf\xe9", f["tenant"])
	assert.Equal(t, "\xff\x00", f["data"])
}
