//go:build ha

package ha_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/observe"
	"github.com/shared-infra/eventbus/router"
)

// What else follows the bus during a failover run, besides the subscriber
// that load measures: a gateway with browsers on its SSE stream, its
// /readyz, `eventbus tail`, and a pattern subscription that must discover a
// type first published after the fault.

const (
	browsers  = 2
	jwtSecret = "ha-test-secret-of-at-least-32-bytes!"
	apiKey    = "ha-test-api-key-0123456789abcdef"
	newTypes  = "ha.new.>" // the pattern the discovery probe subscribes to
	tailPatt  = "ha.*"     // what tail follows (the load's topic)
	// The discovery probe's resync, and its bound: a type's announcement
	// on Pub/Sub can be lost in a failover (the watcher's connection may
	// land on the restarted old primary before Sentinel has made it a
	// replica), and then the resync is what finds the type.
	discoverResync = 2 * time.Second
	discoverIn     = 2*discoverResync + 5*time.Second
)

// sseBrowser is one browser on the gateway's stream: it reconnects the way
// EventSource does (after ~100 ms, sending Last-Event-ID) and records what
// it got.
type sseBrowser struct {
	url, token string
	kick       chan struct{} // a receive drops the connection (then it reconnects)

	mu       sync.Mutex
	events   map[string]int // CloudEvent id -> deliveries
	entries  map[string]int // SSE id (push-stream entry) -> deliveries
	gaps     []string       // data of every "gap" event
	connects int            // successful (200) connections
	refused  int            // non-200 answers to a (re)connect
	lastID   string
}

func (b *sseBrowser) run(ctx context.Context) {
	for ctx.Err() == nil {
		b.once(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond): // EventSource's reconnection delay, shortened
		}
	}
}

func (b *sseBrowser) once(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-b.kick:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url, nil)
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	b.mu.Lock()
	if b.lastID != "" {
		req.Header.Set("Last-Event-ID", b.lastID)
	}
	b.mu.Unlock()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	b.mu.Lock()
	if resp.StatusCode != http.StatusOK {
		b.refused++
		b.mu.Unlock()
		return
	}
	b.connects++
	b.mu.Unlock()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var id, typ string
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" { // dispatch
			b.dispatch(id, typ, strings.Join(data, "\n"), len(data) > 0)
			id, typ, data = "", "", nil
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "id":
			id = value
		case "event":
			typ = value
		case "data":
			data = append(data, value)
		}
	}
}

func (b *sseBrowser) dispatch(id, typ, data string, hasData bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if id != "" {
		b.lastID = id // EventSource sets it even for an id-only message
	}
	if !hasData {
		return
	}
	if typ == gateway.GapEvent {
		b.gaps = append(b.gaps, data)
		return
	}
	var ce struct {
		ID string `json:"id"`
	}
	if json.Unmarshal([]byte(data), &ce) == nil && ce.ID != "" {
		b.events[ce.ID]++
	}
	if id != "" {
		b.entries[id]++
	}
}

// readiness polls /readyz every 20 ms and records when it was not 200.
type readiness struct {
	url string

	mu        sync.Mutex
	firstDown time.Time // first non-200 answer (or failed request)
	lastDown  time.Time // last one
	downs     int
	lastBody  string // body of the last non-200 answer
	lastOK    time.Time
}

func (r *readiness) run(ctx context.Context) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, r.url, nil)
		resp, err := http.DefaultClient.Do(req)
		now := time.Now()
		var body string
		ok := false
		if err == nil {
			var b strings.Builder
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				b.WriteString(sc.Text())
			}
			resp.Body.Close()
			body = b.String()
			ok = resp.StatusCode == http.StatusOK
		} else {
			body = err.Error()
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		if ok {
			r.lastOK = now
		} else {
			if r.firstDown.IsZero() {
				r.firstDown = now
			}
			r.lastDown = now
			r.downs++
			r.lastBody = body
		}
		r.mu.Unlock()
	}
}

// tailer runs `eventbus tail` and collects the event ids it prints.
type tailer struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	ids    map[string]int
	stderr strings.Builder
	exited chan struct{}
	err    error
}

var (
	cliOnce sync.Once
	cliPath string
	cliErr  error
	cliDir  string
)

// TestMain removes the eventbus binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if cliDir != "" {
		_ = os.RemoveAll(cliDir)
	}
	os.Exit(code)
}

// eventbusCLI builds cmd/eventbus once per test binary (without -race: it
// is a subject here, not what the race detector should slow down).
func eventbusCLI(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		cliDir, cliErr = os.MkdirTemp("", "ha-eventbus-cli")
		if cliErr != nil {
			return
		}
		cliPath = filepath.Join(cliDir, "eventbus")
		out, err := exec.Command("go", "build", "-o", cliPath, "../cmd/eventbus").CombinedOutput()
		if err != nil {
			cliErr = fmt.Errorf("go build ../cmd/eventbus: %v: %s", err, out)
		}
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliPath
}

func startTail(t *testing.T, redisURL string) *tailer {
	t.Helper()
	tl := &tailer{ids: map[string]int{}, exited: make(chan struct{})}
	tl.cmd = exec.Command(eventbusCLI(t), "--prefix", "ha:", "tail", tailPatt, "--from", "0", "--json", "--refresh", "200ms")
	tl.cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL)
	tl.cmd.Stderr = &syncWriter{mu: &tl.mu, b: &tl.stderr}
	out, err := tl.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, tl.cmd.Start())
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var ev struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.ID != "" {
				tl.mu.Lock()
				tl.ids[ev.ID]++
				tl.mu.Unlock()
			}
		}
		err := tl.cmd.Wait()
		tl.mu.Lock()
		tl.err = err
		tl.mu.Unlock()
		close(tl.exited)
	}()
	t.Cleanup(tl.stop)
	return tl
}

// stop interrupts tail (as Ctrl-C does) and waits for it.
func (tl *tailer) stop() {
	select {
	case <-tl.exited:
		return
	default:
	}
	_ = tl.cmd.Process.Signal(os.Interrupt)
	select {
	case <-tl.exited:
	case <-time.After(5 * time.Second):
		_ = tl.cmd.Process.Kill()
		<-tl.exited
	}
}

// exitedEarly reports whether tail ended by itself, and how.
func (tl *tailer) exitedEarly() (bool, string) {
	select {
	case <-tl.exited:
		tl.mu.Lock()
		defer tl.mu.Unlock()
		return true, fmt.Sprintf("%v: %s", tl.err, tl.stderr.String())
	default:
		return false, ""
	}
}

type syncWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// discovery is a pattern subscription on newTypes, started before the
// fault, that must find a type first published after the fault within
// discoverIn: through the registry watcher's Pub/Sub (milliseconds) or, if
// the announcement was lost in the failover, its resync (discoverResync).
type discovery struct {
	mu   sync.Mutex
	got  map[string]time.Time // event id -> when received
	sent map[string]time.Time // event id -> when acknowledged
}

func startDiscovery(t *testing.T, ctx context.Context, b *bus.Bus) *discovery {
	t.Helper()
	sub, err := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "ha-discovery", ResyncInterval: discoverResync, BlockTime: 100 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	ch, err := sub.Subscribe(ctx, newTypes)
	require.NoError(t, err)
	d := &discovery{got: map[string]time.Time{}, sent: map[string]time.Time{}}
	go func() {
		for m := range ch {
			d.mu.Lock()
			if _, ok := d.got[m.UUID]; !ok {
				d.got[m.UUID] = time.Now()
			}
			d.mu.Unlock()
			m.Ack()
		}
	}()
	return d
}

// publishNew publishes one event of a type nobody published before,
// retrying (same id) until it is acknowledged, and returns its id.
func (d *discovery) publishNew(ctx context.Context, b *bus.Bus) (string, error) {
	typ := "ha.new.t" + strings.ReplaceAll(watermill.NewShortUUID(), "-", "")[:8]
	id := watermill.NewUUID()
	deadline := time.Now().Add(20 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := bus.Publish(pctx, b.Publisher(), strings.ToLower(typ), map[string]string{"new": "type"}, bus.WithID(id))
		cancel()
		if err == nil {
			d.mu.Lock()
			d.sent[id] = time.Now()
			d.mu.Unlock()
			return id, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("publishing a new type after the fault: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFound returns how long after its acknowledgement the event id was
// received, waiting up to discoverIn; ok is false if it was not.
func (d *discovery) waitFound(id string) (time.Duration, bool) {
	deadline := time.Now().Add(discoverIn)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		got, ok := d.got[id]
		sent := d.sent[id]
		d.mu.Unlock()
		if ok {
			return max(0, got.Sub(sent)), true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, false
}

// extras is everything besides load's subscriber that follows the bus.
type extras struct {
	gw        *gateway.Gateway
	srv       *httptest.Server
	browsers  []*sseBrowser
	ready     *readiness
	tail      *tailer
	disc      *discovery
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	newTypeID string
}

// startExtras starts, on b: a gateway (with /readyz of an observer on a
// router with one handler mounted, as `eventbus serve` does) and its
// browsers, the readiness poller, tail (on redisURL) and the discovery
// subscription.
func startExtras(t *testing.T, b *bus.Bus, redisURL string) *extras {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	x := &extras{cancel: cancel}
	t.Cleanup(x.stop)

	gw, err := gateway.New(b, gateway.Config{
		Auth:    gateway.AuthConfig{HMACSecret: []byte(jwtSecret)},
		Ingress: gateway.IngressConfig{APIKeys: []string{apiKey}},
		// Heartbeats move the browsers' Last-Event-ID; the buffer holds a
		// few seconds at the test's rate so nobody is cut for being slow.
		HeartbeatInterval: time.Second, ClientBuffer: 8192, ReadBlock: 200 * time.Millisecond,
	}, nil)
	require.NoError(t, err)
	x.gw = gw
	r, err := router.New(b, router.Config{}, nil)
	require.NoError(t, err)
	require.NoError(t, r.AddHandler("ha-ready", "ha.ready.>", func(context.Context, *message.Message) error { return nil }))
	obs, err := observe.New(r, observe.Config{Registerer: prometheus.NewRegistry(), RedisTimeout: 500 * time.Millisecond}, nil)
	require.NoError(t, err)
	gw.Mount("GET "+observe.PathReadyz, obs.Readyz())
	x.srv = httptest.NewServer(gw.Handler())

	x.wg.Go(func() { _ = gw.Run(ctx) })
	x.wg.Go(func() { _ = r.Run(ctx) })
	x.wg.Go(func() {
		<-ctx.Done()
		_ = r.Close()
		_ = obs.Close()
	})
	select {
	case <-gw.Running():
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway's push reader did not start within 10 s")
	}
	waitFor(t, 10*time.Second, "/readyz to answer 200", func() bool {
		resp, err := http.Get(x.srv.URL + observe.PathReadyz)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	for i := range browsers {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": fmt.Sprintf("browser-%d", i), "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString([]byte(jwtSecret))
		require.NoError(t, err)
		br := &sseBrowser{url: x.srv.URL + gateway.StreamPath, token: tok, kick: make(chan struct{}, 1), events: map[string]int{}, entries: map[string]int{}}
		x.browsers = append(x.browsers, br)
		x.wg.Go(func() { br.run(ctx) })
	}
	waitFor(t, 10*time.Second, "every browser connected", func() bool { return gw.Clients() == browsers })

	x.ready = &readiness{url: x.srv.URL + observe.PathReadyz}
	x.wg.Go(func() { x.ready.run(ctx) })
	x.tail = startTail(t, redisURL)
	x.disc = startDiscovery(t, ctx, b)
	return x
}

func (x *extras) stop() {
	x.cancel()
	if x.srv != nil {
		x.srv.CloseClientConnections()
		x.srv.Close()
	}
	if x.gw != nil {
		_ = x.gw.Close()
	}
	x.wg.Wait()
	if x.tail != nil {
		x.tail.stop()
	}
}

// extraRow is what the extras saw in one run.
type extraRow struct {
	sseMissing, sseEntryDups, sseEventDups, sseGaps, sseReconnects, sseRefused int
	// sseAheadGaps are the gap events that say the browser's Last-Event-ID
	// is ahead of the push stream: it had read an entry the new primary
	// never got (see report).
	sseAheadGaps                 int
	kickedMissing, kickedRefused int // the browser dropped at the fault
	tailMissing                  int
	tailExited                   string
	readyDownFor                 time.Duration // first non-200 -> last non-200
	readyDowns                   int
	readyBody                    string
	readyRecovered               bool
	discovered                   bool
	discoverAfter                time.Duration
}

func (e extraRow) String() string {
	return fmt.Sprintf("sse: missing=%d entry-dups=%d event-dups=%d gaps=%d reconnects=%d refused=%d (browser dropped at the fault: missing=%d refused=%d); tail: missing=%d exited=%q; readyz: non-200=%d for %s recovered=%v; new type found=%v after %s",
		e.sseMissing, e.sseEntryDups, e.sseEventDups, e.sseGaps, e.sseReconnects, e.sseRefused, e.kickedMissing, e.kickedRefused,
		e.tailMissing, e.tailExited, e.readyDowns, e.readyDownFor.Round(time.Millisecond), e.readyRecovered,
		e.discovered, e.discoverAfter.Round(time.Millisecond))
}

// kicked is the browser whose connection drops when the fault is injected:
// it reconnects, during the outage or after it, with its Last-Event-ID.
const kicked = browsers - 1

// atFault drops the kicked browser's connection.
func (x *extras) atFault() { x.browsers[kicked].kick <- struct{}{} }

// afterFault runs once an event published after the fault was acknowledged:
// it publishes the new type and waits for the discovery subscription.
func (x *extras) afterFault(t *testing.T, b *bus.Bus) {
	id, err := x.disc.publishNew(context.Background(), b)
	if err != nil {
		t.Error(err)
		return
	}
	x.newTypeID = id
}

// collect waits (bounded) for the browsers and tail to have every id of
// acked, then reports.
func (x *extras) collect(t *testing.T, acked []string) extraRow {
	t.Helper()
	var e extraRow
	if x.newTypeID != "" {
		e.discoverAfter, e.discovered = x.disc.waitFound(x.newTypeID)
	}
	missing := func(have func(string) bool) int {
		n := 0
		for _, id := range acked {
			if !have(id) {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(drainLimit)
	for {
		n := 0
		for _, br := range x.browsers {
			br.mu.Lock()
			n += missing(func(id string) bool { return br.events[id] > 0 })
			br.mu.Unlock()
		}
		x.tail.mu.Lock()
		n += missing(func(id string) bool { return x.tail.ids[id] > 0 })
		x.tail.mu.Unlock()
		if early, _ := x.tail.exitedEarly(); n == 0 || early || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, br := range x.browsers {
		br.mu.Lock()
		m := missing(func(id string) bool { return br.events[id] > 0 })
		e.sseMissing += m
		if i == kicked {
			e.kickedMissing, e.kickedRefused = m, br.refused
		}
		for _, n := range br.entries {
			e.sseEntryDups += n - 1
		}
		for _, n := range br.events {
			e.sseEventDups += n - 1
		}
		e.sseGaps += len(br.gaps)
		for _, g := range br.gaps {
			if strings.Contains(g, "is ahead of the event stream") {
				e.sseAheadGaps++
			}
		}
		e.sseReconnects += br.connects - 1
		e.sseRefused += br.refused
		if len(br.gaps) > 0 {
			t.Logf("gap events: %s", strings.Join(br.gaps, " | "))
		}
		br.mu.Unlock()
	}
	x.tail.mu.Lock()
	e.tailMissing = missing(func(id string) bool { return x.tail.ids[id] > 0 })
	x.tail.mu.Unlock()
	if early, how := x.tail.exitedEarly(); early {
		e.tailExited = how
	}
	x.ready.mu.Lock()
	e.readyDowns = x.ready.downs
	if e.readyDowns > 0 {
		e.readyDownFor = x.ready.lastDown.Sub(x.ready.firstDown)
		e.readyBody = x.ready.lastBody
		e.readyRecovered = x.ready.lastOK.After(x.ready.lastDown)
	} else {
		e.readyRecovered = !x.ready.lastOK.IsZero()
	}
	x.ready.mu.Unlock()
	if e.readyBody != "" {
		t.Logf("last /readyz answer during the outage: %s", e.readyBody)
	}
	return e
}
