//go:build tls

package bus_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/middleware"
	"github.com/shared-infra/eventbus/observe"
	"github.com/shared-infra/eventbus/router"
)

// tlsAdmin is a client of the admin user scripts/redis-tls.sh creates next
// to the least-privilege one: for what the bus never does (clean-up, ACL
// LOG).
func tlsAdmin(t *testing.T) *redis.Client {
	t.Helper()
	_, _, caFile := tlsEnv(t)
	adminURL := os.Getenv("REDIS_TLS_ADMIN_URL")
	if adminURL == "" {
		t.Fatal("REDIS_TLS_ADMIN_URL is not set: scripts/redis-tls.sh writes it to DIR/env (run `make test-tls`)")
	}
	return tlsClient(t, adminURL, caFile)
}

// aclDenials returns the ACL LOG entries of user (denied commands, keys,
// channels), one line each.
func aclDenials(t *testing.T, admin *redis.Client, user string) []string {
	t.Helper()
	entries, err := admin.ACLLog(context.Background(), 100).Result()
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		if e.Username == user {
			out = append(out, e.Reason+" "+e.Context+" "+e.Object)
		}
	}
	return out
}

// aclFileRules returns the rules of the one `user eventbus` line of
// deploy/redis-acl.conf, without "user eventbus" and the password.
func aclFileRules(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../deploy/redis-acl.conf")
	require.NoError(t, err)
	var line string
	for l := range strings.SplitSeq(string(raw), "\n") {
		if strings.HasPrefix(l, "user eventbus ") {
			require.Empty(t, line, "one user line")
			line = l
		}
	}
	require.NotEmpty(t, line)
	var rules []string
	for _, f := range strings.Fields(line)[2:] {
		if !strings.HasPrefix(f, ">") {
			rules = append(rules, f)
		}
	}
	return rules
}

// TestTLSACLUserIsTheDeployLine: the server's eventbus user has exactly the
// rules of deploy/redis-acl.conf. Redis rewrites rules (it folds commands
// into categories), so a user made here from the file's line is compared with
// it, rule for rule as Redis reports them.
func TestTLSACLUserIsTheDeployLine(t *testing.T) {
	admin := tlsAdmin(t)
	ctx := t.Context()
	const check = "eventbus-check"
	args := []any{"ACL", "SETUSER", check}
	for _, r := range aclFileRules(t) {
		args = append(args, r)
	}
	require.NoError(t, admin.Do(ctx, args...).Err())
	t.Cleanup(func() { _ = admin.Do(context.Background(), "ACL", "DELUSER", check).Err() })
	get := func(user string) map[string]string {
		m, err := admin.Do(ctx, "ACL", "GETUSER", user).Result()
		require.NoError(t, err)
		out := map[string]string{}
		for k, v := range m.(map[any]any) {
			switch k {
			case "commands", "keys", "channels":
				out[k.(string)] = v.(string)
			}
		}
		return out
	}
	live, want := get("eventbus"), get(check)
	assert.Equal(t, want, live)
	assert.True(t, strings.HasPrefix(live["commands"], "-@all "), "no command but those granted: %s", live["commands"])
	assert.Equal(t, "~events:* ~{events:* ~rate:events:$ingress:*", live["keys"])
	assert.Equal(t, "&events:*", live["channels"])
}

// TestTLSACLUserIsConfined: the user of the deploy line cannot touch keys or
// channels outside the default prefix, nor run admin commands; a bus under
// another prefix is refused with NOPERM.
func TestTLSACLUserIsConfined(t *testing.T) {
	rawURL, _, caFile := tlsEnv(t)
	c := tlsClient(t, rawURL, caFile)
	ctx := t.Context()
	for name, cmd := range map[string]redis.Cmder{
		"SET outside the prefix":     c.Set(ctx, "other:x", "1", 0),
		"XADD outside the prefix":    c.XAdd(ctx, &redis.XAddArgs{Stream: "other:s", Values: []any{"a", "1"}}),
		"PUBLISH outside the prefix": c.Publish(ctx, "other:chan", "x"),
		"FLUSHALL":                   c.FlushAll(ctx),
		"CONFIG GET":                 c.ConfigGet(ctx, "*"),
		"KEYS":                       c.Keys(ctx, "*"),
		"ACL WHOAMI":                 c.Do(ctx, "ACL", "WHOAMI"),
		"SCRIPT FLUSH":               c.ScriptFlush(ctx),
		"CLIENT LIST":                c.ClientList(ctx),
		"XAUTOCLAIM (not used)":      c.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: "events:x", Group: "g", Consumer: "c", Start: "0"}),
	} {
		err := cmd.Err()
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), "NOPERM", name)
		}
	}
	b, err := bus.New(bus.Config{ServiceName: "tls-svc", Client: c, StreamPrefix: "other:"}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	_, err = bus.Publish(ctx, b.Publisher(), "acl.denied", map[string]int{"n": 1})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NOPERM")
}

// TestTLSACLUserRunsEveryBusFeature: the bus, a worker's subscribers and
// the gateway, with the default prefix, over TLS as the user of the deploy
// line: schema registry, publish (validated, addressed, deduplicated,
// delayed), exact and pattern subscriptions, consume and ack, nack and
// redelivery, claim of a dead consumer's entries (heartbeats), dead
// letters and redrive, retention trim and loss accounting, the discovery
// sweep, group reset, the periodic jobs' leases, the gateway's shared rate
// limit, ingress and its push stream to a browser. Redis's ACL LOG records
// no denial for the user meanwhile, and the bus logs no error.
func TestTLSACLUserRunsEveryBusFeature(t *testing.T) {
	rawURL, _, caFile := tlsEnv(t)
	admin := tlsAdmin(t)
	require.NoError(t, admin.Do(t.Context(), "ACL", "LOG", "RESET").Err())
	c := tlsClient(t, rawURL, caFile)
	const prefix = bus.DefaultStreamPrefix // what the deploy line pins
	clean := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, pattern := range []string{prefix + "*", "{" + prefix + "*", "rate:" + prefix + "*"} {
			iter := admin.Scan(ctx, 0, pattern, 500).Iterator()
			for iter.Next(ctx) {
				_ = admin.Unlink(ctx, iter.Val()).Err()
			}
		}
	}
	clean() // the server is the test run's own, but -count=2 reuses it
	t.Cleanup(clean)
	logger := &tlsLogger{}
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range logger.all() {
				t.Log(l)
			}
		}
	})
	b, err := bus.New(bus.Config{
		ServiceName:          "acl-svc",
		Client:               c,
		Retention:            bus.Retention{MaxLen: 1000, KeepLen: 2, TrimInterval: 100 * time.Millisecond},
		DiscoveryInterval:    100 * time.Millisecond,
		SchedulePollInterval: 20 * time.Millisecond,
	}, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	require.Equal(t, prefix, b.Config().StreamPrefix)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Schema registry: put, get, list; publish validates against it.
	const typ = "acl.photo"
	_, err = b.Schemas().Put(ctx, typ, []byte(`{"type":"object","required":["photoId"],"properties":{"photoId":{"type":"string"},"size":{"type":"integer"}}}`))
	require.NoError(t, err)
	s, err := b.Schemas().Get(ctx, typ, 0)
	require.NoError(t, err)
	assert.Equal(t, 1, s.Version)
	all, err := b.Schemas().List(ctx)
	require.NoError(t, err)
	assert.Len(t, all, 1)
	_, err = bus.Publish(ctx, b.Publisher(), typ, map[string]int{"size": 1})
	require.ErrorIs(t, err, bus.ErrSchemaViolation)

	// Exact and pattern subscriptions (heartbeats on, short claim timings).
	exactCfg := fastSub("acl-exact")
	exactCfg.HeartbeatTTL = 200 * time.Millisecond
	exactCfg.NackDelay = 10 * time.Millisecond
	exact, err := b.NewSubscriber(exactCfg)
	require.NoError(t, err)
	exactCh, err := exact.Subscribe(ctx, typ)
	require.NoError(t, err)
	pattern, err := b.NewSubscriber(fastSub("acl-pattern"))
	require.NoError(t, err)
	patternCh, err := pattern.Subscribe(ctx, "acl.*")
	require.NoError(t, err)

	// Publish (addressed to a room: a push copy), consume and ack; the
	// first delivery on the exact subscription is nacked and redelivered.
	id, err := bus.Publish(ctx, b.Publisher(), typ, uploaded{PhotoID: "p1", Size: 1}, bus.WithRoom("lobby"))
	require.NoError(t, err)
	first := nextMsg(t, exactCh)
	assert.Equal(t, id, first.UUID)
	first.Nack()
	again := nextMsg(t, exactCh)
	assert.Equal(t, id, again.UUID)
	assert.Equal(t, "2", again.Metadata.Get(bus.MetaDelivery))
	again.Ack()
	assert.Equal(t, id, receive(t, patternCh, 1, 10*time.Second)[0].UUID)

	// Dedup: the same id twice is written once.
	for range 2 {
		_, err = bus.Publish(ctx, b.Publisher(), typ, uploaded{PhotoID: "p2"}, bus.WithID("acl-dup"))
		require.NoError(t, err)
	}
	assert.Equal(t, int64(1), b.Publisher().Duplicates())
	assert.Equal(t, "acl-dup", receive(t, exactCh, 1, 10*time.Second)[0].UUID)
	assert.Equal(t, "acl-dup", receive(t, patternCh, 1, 10*time.Second)[0].UUID)

	// Delay: scheduled, listed, moved by the bus's mover when due; a second
	// one is cancelled.
	delayedID, err := bus.Publish(ctx, b.Publisher(), typ, uploaded{PhotoID: "p3"}, bus.WithDelay(300*time.Millisecond))
	require.NoError(t, err)
	cancelled, err := bus.Publish(ctx, b.Publisher(), typ, uploaded{PhotoID: "p4"}, bus.WithDelay(time.Hour))
	require.NoError(t, err)
	sched, err := b.ListScheduled(ctx, typ, 10)
	require.NoError(t, err)
	assert.NotEmpty(t, sched)
	require.NoError(t, b.CancelScheduled(ctx, typ, cancelled))
	assert.Equal(t, delayedID, receive(t, exactCh, 1, 10*time.Second)[0].UUID)
	assert.Equal(t, delayedID, receive(t, patternCh, 1, 10*time.Second)[0].UUID)

	// Claim: entries a dead consumer ("ghost": in the group's consumer set,
	// no heartbeat) read and never acked go to the live subscriber.
	require.NoError(t, exact.Close()) // so that only the ghost reads the next one
	ghostID, err := bus.Publish(ctx, b.Publisher(), typ, uploaded{PhotoID: "p5"})
	require.NoError(t, err)
	res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "acl-exact", Consumer: "ghost",
		Streams: []string{b.Config().StreamKey(typ), ">"}, Count: 10, Block: -1}).Result()
	require.NoError(t, err)
	require.Len(t, res[0].Messages, 1)
	require.NoError(t, c.SAdd(ctx, b.Config().ConsumersKey("acl-exact"), "ghost").Err())
	exact, err = b.NewSubscriber(exactCfg)
	require.NoError(t, err)
	exactCh, err = exact.Subscribe(ctx, typ)
	require.NoError(t, err)
	claimed := receive(t, exactCh, 1, 15*time.Second)[0]
	assert.Equal(t, ghostID, claimed.UUID)
	assert.Equal(t, "2", claimed.Metadata.Get(bus.MetaDelivery))
	assert.Equal(t, ghostID, receive(t, patternCh, 1, 10*time.Second)[0].UUID)
	n, err := c.Exists(ctx, b.Config().HeartbeatKey("acl-exact", exact.Config().Consumer)).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the live subscriber's heartbeat")

	// Dead letters: add, list, redrive (back through the schema), purge.
	dl := message.NewMessage("acl-dead", []byte(`{"photoId":"p6"}`))
	for k, v := range map[string]string{bus.AttrID: dl.UUID, bus.AttrType: typ, bus.AttrSource: "acl-test", bus.AttrSpecVersion: "1.0", bus.MetaTopic: typ} {
		dl.Metadata.Set(k, v)
	}
	_, err = b.DeadLetters().Add(ctx, dl, bus.DeadLetterInfo{Reason: "boom", Handler: "h", Group: "acl-exact", Attempts: 3})
	require.NoError(t, err)
	dls, err := b.DeadLetters().List(ctx, "-", 10)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	assert.Equal(t, "boom", dls[0].Reason)
	redriven, err := b.DeadLetters().Redrive(ctx, bus.RedriveFilter{IDs: []string{dls[0].ID}})
	require.NoError(t, err)
	assert.Equal(t, 1, redriven)
	// Redrive addresses it to the group that gave up on it only.
	assert.Equal(t, "acl-dead", receive(t, exactCh, 1, 10*time.Second)[0].UUID)
	_, err = b.DeadLetters().Add(ctx, dl, bus.DeadLetterInfo{Reason: "again"})
	require.NoError(t, err)
	_, err = b.DeadLetters().Purge(ctx)
	require.NoError(t, err)
	left, err := b.DeadLetters().Len(ctx)
	require.NoError(t, err)
	assert.Zero(t, left)

	// Discovery: a stream written by hand is found by the sweep and reaches
	// the pattern subscription.
	rawID := watermill.NewUUID()
	require.NoError(t, c.XAdd(ctx, &redis.XAddArgs{Stream: b.Config().StreamKey("acl.raw"), Values: rawEvent(rawID, "acl.raw")}).Err())
	assert.Equal(t, rawID, receive(t, patternCh, 1, 15*time.Second)[0].UUID)
	_, err = b.Discover(ctx)
	require.NoError(t, err)

	// Retention: everything is read and acked, so a pass trims to KeepLen
	// (the trimmer also runs by itself every 100ms); losses are readable.
	_, err = b.Trim(ctx, typ)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		l, err := c.XLen(ctx, b.Config().StreamKey(typ)).Result()
		return err == nil && l <= 2
	}, 10*time.Second, 20*time.Millisecond, "trimmed to KeepLen")
	_, err = b.Losses(ctx, typ)
	require.NoError(t, err)

	// Losses: entries trimmed by hand before a group read them are counted.
	lossKey := b.Config().StreamKey("acl.lossy")
	require.NoError(t, c.XGroupCreateMkStream(ctx, lossKey, "acl-lossy", "0").Err())
	for range 10 {
		require.NoError(t, c.XAdd(ctx, &redis.XAddArgs{Stream: lossKey, Values: rawEvent(watermill.NewUUID(), "acl.lossy")}).Err())
	}
	_, err = b.Trim(ctx, "acl.lossy") // the pass sees the group
	require.NoError(t, err)
	require.NoError(t, c.XTrimMaxLen(ctx, lossKey, 4).Err()) // 6 unread entries gone
	_, err = b.Trim(ctx, "acl.lossy")
	require.NoError(t, err)
	losses, err := b.Losses(ctx, "acl.lossy")
	require.NoError(t, err)
	require.Len(t, losses, 1)
	assert.Equal(t, int64(6), losses[0].Lost)

	// Replay into a temporary group, destroyed afterwards.
	replayed, err := b.ReplayInto(ctx, bus.ReplayRange{Types: []string{typ}, From: bus.ReplayFrom{ID: "0"}}, func(*message.Message) error { return nil })
	require.NoError(t, err)
	assert.Positive(t, replayed)

	// Durability: WAIT runs (this server has no replica to acknowledge).
	db, err := bus.New(bus.Config{ServiceName: "acl-durable", Client: c, Durability: bus.Durability{Replicas: 1, Timeout: 5 * time.Millisecond}}, logger)
	require.NoError(t, err)
	_, err = bus.Publish(ctx, db.Publisher(), typ, uploaded{PhotoID: "durable"})
	require.ErrorIs(t, err, bus.ErrNotReplicated)
	assert.Contains(t, err.Error(), "0 of 1 replica(s) acknowledged", "WAIT answered")
	require.NoError(t, db.Close())

	// Replay: the group goes back to the stream's start.
	_, err = b.ResetGroup(ctx, "acl-pattern", bus.ReplayFrom{ID: "0"}, bus.ResetGroupOptions{})
	require.NoError(t, err)

	// A worker: a router handler (handled-event dedup, a permanent failure
	// dead-lettered by the router) and observe's probes, stats and metrics.
	rlog := &tlsLogger{}
	r, err := router.New(b, router.Config{Subscriber: fastSub("")}, rlog)
	require.NoError(t, err)
	handled := make(chan string, 64)
	require.NoError(t, router.Handle(r, "acl-worker", typ, func(_ context.Context, ev bus.Event[uploaded]) error {
		if ev.Data.PhotoID == "poison" {
			return middleware.Permanent(errors.New("poisoned"))
		}
		handled <- ev.ID
		return nil
	}, router.WithDedup(time.Minute)))
	obs, err := observe.New(r, observe.Config{Registerer: prometheus.NewRegistry()}, rlog)
	require.NoError(t, err)
	t.Cleanup(func() { _ = obs.Close() })
	mux := http.NewServeMux()
	obs.Mount(mux)
	osrv := httptest.NewServer(mux)
	t.Cleanup(osrv.Close)
	rctx, rcancel := context.WithCancel(ctx)
	rdone := make(chan error, 1)
	go func() { rdone <- r.Run(rctx) }()
	t.Cleanup(func() { rcancel(); <-rdone; _ = r.Close() })
	<-r.Running()
	okID, err := bus.Publish(ctx, b.Publisher(), typ, uploaded{PhotoID: "worker-ok"})
	require.NoError(t, err)
	_, err = bus.Publish(ctx, b.Publisher(), typ, uploaded{PhotoID: "poison"})
	require.NoError(t, err)
	waitID(t, handled, okID)
	require.Eventually(t, func() bool {
		n, err := b.DeadLetters().Len(ctx)
		return err == nil && n == 1
	}, 10*time.Second, 20*time.Millisecond, "the router dead-letters the poisoned event")
	require.Eventually(t, func() bool {
		resp, err := http.Get(osrv.URL + observe.PathReadyz)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "the worker's /readyz answers 200")
	for _, path := range []string{observe.PathHealthz, observe.PathStats, observe.PathMetrics} {
		resp, err := http.Get(osrv.URL + path)
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
	}

	// The gateway: ingress with an API key (shared rate limit in Redis),
	// the push stream to a browser in room lobby.
	secret := []byte("acl-test-secret-of-at-least-32-bytes!")
	const apiKey = "acl-test-api-key-0123456789"
	gw, err := gateway.New(b, gateway.Config{
		Auth:    gateway.AuthConfig{HMACSecret: secret},
		Ingress: gateway.IngressConfig{APIKeys: []string{apiKey}},
	}, logger)
	require.NoError(t, err)
	gctx, gcancel := context.WithCancel(ctx)
	gdone := make(chan error, 1)
	go func() { gdone <- gw.Run(gctx) }()
	t.Cleanup(func() { gcancel(); <-gdone })
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	select {
	case <-gw.Running():
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway's push reader did not start")
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "rooms": []string{"lobby"}, "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(gctx, http.MethodGet, srv.URL+gateway.StreamPath+"?"+gateway.RoomsParam+"=lobby", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	events := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if after, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- after
			}
		}
		close(events)
	}()
	require.Eventually(t, func() bool { return gw.Clients() == 1 }, 10*time.Second, 10*time.Millisecond, "the browser's stream is open")
	ce := `{"specversion":"1.0","id":"acl-ingress","source":"acl-test","type":"` + typ + `","room":"lobby","data":{"photoId":"p7"}}`
	preq, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+gateway.EventsPath, strings.NewReader(ce))
	require.NoError(t, err)
	preq.Header.Set("Authorization", "Bearer "+apiKey)
	preq.Header.Set("Content-Type", "application/cloudevents+json")
	presp, err := http.DefaultClient.Do(preq)
	require.NoError(t, err)
	var accepted struct{ IDs []string }
	require.NoError(t, json.NewDecoder(presp.Body).Decode(&accepted))
	_ = presp.Body.Close()
	require.Equal(t, http.StatusAccepted, presp.StatusCode)
	assert.Equal(t, []string{"acl-ingress"}, accepted.IDs)
	select {
	case data, ok := <-events:
		require.True(t, ok, "the stream ended")
		var got struct {
			ID   string          `json:"id"`
			Data json.RawMessage `json:"data"`
		}
		require.NoError(t, json.Unmarshal([]byte(data), &got), data)
		assert.Equal(t, "acl-ingress", got.ID)
		assert.JSONEq(t, `{"photoId":"p7"}`, string(got.Data))
	case <-time.After(10 * time.Second):
		push, _ := admin.XRange(ctx, b.Config().PushKey(), "-", "+").Result()
		t.Fatalf("the browser got no event; push stream: %v", push)
	}
	for m := nextMsg(t, exactCh); m.UUID != "acl-ingress"; m = nextMsg(t, exactCh) {
		m.Ack() // the worker's events, published meanwhile
	}
	rateKeys, err := admin.Keys(ctx, "rate:"+prefix+"*").Result()
	require.NoError(t, err)
	assert.NotEmpty(t, rateKeys, "the ingress rate limit lives in Redis")

	// Close: heartbeats removed once drained.
	require.NoError(t, exact.Close())
	require.NoError(t, pattern.Close())
	n, err = c.Exists(ctx, b.Config().HeartbeatKey("acl-exact", exact.Config().Consumer)).Result()
	require.NoError(t, err)
	assert.Zero(t, n)
	time.Sleep(300 * time.Millisecond) // a few more trimmer and sweep passes

	assert.Empty(t, aclDenials(t, admin, "eventbus"), "commands, keys or channels the deploy ACL line denied")
	for _, line := range logger.all() {
		if strings.Contains(line, bus.ErrEntriesLost.Error()) {
			continue // the losses made above, logged as they should be
		}
		assert.False(t, strings.HasPrefix(line, "ERROR") || denied(line), "logged: %s", line)
	}
	for _, line := range rlog.all() { // the router logs the dead letter as an error
		assert.False(t, denied(line), "logged: %s", line)
	}
}

// denied tells a line that holds an ACL refusal, of a command or of one in a
// script.
func denied(line string) bool {
	return strings.Contains(line, "NOPERM") || strings.Contains(line, "can't run this command")
}

// waitID reads ids from ch until id comes.
func waitID(t *testing.T, ch <-chan string, id string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case got := <-ch:
			if got == id {
				return
			}
		case <-deadline:
			t.Fatalf("%s was not handled in 10s", id)
		}
	}
}

// nextMsg returns the next message of ch without acking it.
func nextMsg(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		require.True(t, ok, "channel closed")
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message in 10s")
		return nil
	}
}
