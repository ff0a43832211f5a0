package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmhttp "github.com/ThreeDotsLabs/watermill-http/v2/pkg/http"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// The watermill-http contract of the ingress holds on its edges: what
// NewIngressPublisher (a watermill-http Publisher) sends is read back, field
// for field, by a watermill-http Subscriber of one's own whose
// UnmarshalMessageFunc is UnmarshalCloudEvent — without any gateway.
func TestIngressPublisherToOwnWatermillHTTPSubscriber(t *testing.T) {
	sub, err := wmhttp.NewSubscriber("127.0.0.1:0", wmhttp.SubscriberConfig{UnmarshalMessageFunc: gateway.UnmarshalCloudEvent}, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := sub.Subscribe(ctx, gateway.EventsPath)
	require.NoError(t, err)
	go func() { _ = sub.StartHTTPServer() }()
	require.Eventually(t, func() bool { return sub.Addr() != nil }, 5*time.Second, 10*time.Millisecond)

	pub, err := gateway.NewIngressPublisher(gateway.IngressPublisherConfig{URL: "http://" + sub.Addr().String() + gateway.EventsPath, Source: "own-sub-test"}, watermill.NopLogger{})
	require.NoError(t, err)
	msg := message.NewMessage("own-1", []byte(`{"photoId":"p1"}`))
	msg.Metadata.Set(bus.AttrSubject, "p1")
	msg.SetContext(ctx)
	published := make(chan error, 1)
	go func() { published <- pub.Publish("photo.uploaded", msg) }()
	select {
	case got := <-msgs:
		assert.Equal(t, "own-1", got.UUID)
		assert.Equal(t, "photo.uploaded", got.Metadata.Get(bus.AttrType))
		assert.Equal(t, "own-sub-test", got.Metadata.Get(bus.AttrSource))
		assert.Equal(t, "p1", got.Metadata.Get(bus.AttrSubject))
		assert.JSONEq(t, `{"photoId":"p1"}`, string(got.Payload))
		got.Ack()
	case <-ctx.Done():
		t.Fatal("the Subscriber got nothing")
	}
	require.NoError(t, <-published)
}

// An ingress request is decoded, published and answered on its own
// goroutine: the publish that the gate holds in Redis runs inside
// serveEvents, on net/http's goroutine for the request (before issue 18 it
// ran on a handler goroutine that a watermill-http Subscriber's dispatcher
// started, after a gob round trip).
func TestIngressPublishesOnTheRequestGoroutine(t *testing.T) {
	e, gate := gatedEnv(t)
	done := e.postAsync(`{"specversion":"1.0","id":"held","type":"slow.event","source":"s","data":{}}`)
	<-gate.entered
	close(gate.release)
	r := <-done
	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.body)
	assert.Contains(t, gate.stack, "gateway.(*Gateway).serveEvents", "the held XADD's goroutine:\n%s", gate.stack)
	assert.Contains(t, gate.stack, "net/http.(*conn).serve")
}

// xaddGate holds every XADD (or dedup script, which XADDs) to a stream whose key ends with suffix until
// release is closed; entered is closed when the first one arrives.
type xaddGate struct {
	suffix  string
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	stack   string // the goroutine of the first held command; read after entered
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
			g.once.Do(func() {
				buf := make([]byte, 64<<10)
				g.stack = string(buf[:runtime.Stack(buf, false)])
				close(g.entered)
			})
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
// request is published on its own goroutine.
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

// Ingress keeps the events byte for byte: an attribute that is not UTF-8
// (a binary-mode header may hold any byte) arrives as it was sent.
func TestIngressKeepsBytes(t *testing.T) {
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
