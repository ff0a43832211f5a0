package bus_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// Tests of wildcard (pattern) subscriptions over durable streams, on the real
// Redis. Waits are bounded by generous deadlines; nothing asserts on timing.

func newEvent(n int) *message.Message {
	return message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"n":%d}`, n))
}

// publishN publishes n events of typ, one Publish call each, and returns
// their ids in publish order.
func publishN(t testing.TB, pub message.Publisher, typ string, n int) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for i := range n {
		msg := newEvent(i)
		require.NoError(t, pub.Publish(typ, msg))
		ids = append(ids, msg.UUID)
	}
	return ids
}

// rawEvent is an event as a non-Go producer would XADD it by hand.
func rawEvent(id, typ string) []any {
	return []any{
		bus.AttrID, id, bus.AttrType, typ, bus.AttrSource, "by-hand", bus.AttrSpecVersion, bus.SpecVersion,
		bus.AttrDataContentType, "application/json", bus.FieldData, `{"hand":true}`,
	}
}

// tally records what one consumer group received: deliveries per event id
// (more than one is a duplicate, allowed by at-least-once) and the topic.
type tally struct {
	mu     sync.Mutex
	count  map[string]int
	topics map[string]string
}

func newTally() *tally { return &tally{count: map[string]int{}, topics: map[string]string{}} }

// consume acks and records every message of ch until ch is closed, then
// closes the returned channel. n counts this consumer's own deliveries.
func (c *tally) consume(ch <-chan *message.Message, n *atomic.Int64) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ch {
			c.mu.Lock()
			c.count[m.UUID]++
			c.topics[m.UUID] = m.Metadata.Get(bus.MetaTopic)
			c.mu.Unlock()
			if n != nil {
				n.Add(1)
			}
			m.Ack()
		}
	}()
	return done
}

func (c *tally) unique() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.count)
}

func (c *tally) snapshot() (map[string]int, map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	counts := make(map[string]int, len(c.count))
	topics := make(map[string]string, len(c.topics))
	for k, v := range c.count {
		counts[k] = v
		topics[k] = c.topics[k]
	}
	return counts, topics
}

// checkExactly fails if got lacks an id of want or holds one that is not in
// want; duplicate deliveries are logged, not failed (at-least-once).
func checkExactly(t *testing.T, name string, c *tally, want map[string]string) {
	t.Helper()
	got, topics := c.snapshot()
	var missing, extra []string
	dups := 0
	for id, n := range got {
		if _, ok := want[id]; !ok {
			extra = append(extra, id+" ("+topics[id]+")")
		}
		dups += n - 1
	}
	for id, typ := range want {
		if _, ok := got[id]; !ok {
			missing = append(missing, id+" ("+typ+")")
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if dups > 0 {
		t.Logf("%s: %d duplicate deliveries over %d events (allowed: at-least-once)", name, dups, len(got))
	}
	if len(missing) > 0 {
		t.Errorf("%s: %d of %d expected events never delivered, e.g. %v", name, len(missing), len(want), missing[:min(5, len(missing))])
	}
	if len(extra) > 0 {
		t.Errorf("%s: %d delivered events its pattern does not match, e.g. %v", name, len(extra), extra[:min(5, len(extra))])
	}
}

// waitUntil polls cond until it holds or timeout passes; it reports which.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// groupOn returns the consumer group's XINFO GROUPS entry on stream, or nil
// if the group does not exist there (or the stream does not exist).
func groupOn(t testing.TB, client redis.UniversalClient, stream, group string) *redis.XInfoGroup {
	t.Helper()
	groups, err := client.XInfoGroups(context.Background(), stream).Result()
	if err != nil {
		require.Contains(t, err.Error(), "no such key", "XINFO GROUPS %s", stream)
		return nil
	}
	for i := range groups {
		if groups[i].Name == group {
			return &groups[i]
		}
	}
	return nil
}

// drainClosed reads ch until it is closed, acking what comes, and returns the
// ids read. It fails the test if ch is not closed within timeout.
func drainClosed(t *testing.T, ch <-chan *message.Message, timeout time.Duration) []string {
	t.Helper()
	var ids []string
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				return ids
			}
			m.Ack()
			ids = append(ids, m.UUID)
		case <-deadline:
			t.Fatalf("the subscription's channel was not closed within %s", timeout)
		}
	}
}

func idsOf(msgs []*message.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.UUID
	}
	return out
}

func TestWildcardTypeFirstPublishedAfterSubscribeDeliversEveryEvent(t *testing.T) {
	for _, earlier := range []bool{false, true} {
		name := "first pattern subscription of the bus"
		if earlier {
			name = "after an earlier pattern subscription of the bus ended"
		}
		t.Run(name, func(t *testing.T) {
			b := newTestBus(t)
			ctx := ctxT(t)
			cfg := fastSub("late")
			// No resync during the test: only the new-type notification can
			// tell the subscription about the stream.
			cfg.ResyncInterval = time.Hour
			sub, err := b.NewSubscriber(cfg)
			require.NoError(t, err)
			if earlier {
				// The registry watcher's Pub/Sub connection was opened under
				// this ctx; it must outlive it.
				ctx1, cancel1 := context.WithCancel(ctx)
				ch1, err := sub.Subscribe(ctx1, "doc.>")
				require.NoError(t, err)
				cancel1()
				drainClosed(t, ch1, 10*time.Second)
			}
			ch, err := sub.Subscribe(ctx, "photo.*")
			require.NoError(t, err)

			// A burst right away: most of it is written before the
			// subscriber hears of the stream.
			want := publishN(t, b.Publisher(), "photo.arrived", 300)
			other := publishN(t, b.Publisher(), "photo.processing.completed", 5)
			require.Len(t, other, 5)

			got := receive(t, ch, len(want), 10*time.Second)
			// Concurrency 1: one stream is delivered in stream order, from its
			// first entry.
			assert.Equal(t, want, idsOf(got))
			for _, m := range got {
				assert.Equal(t, "photo.arrived", m.Metadata.Get(bus.MetaTopic))
			}
			assert.Nil(t, groupOn(t, b.Client(), b.Config().StreamKey("photo.processing.completed"), "late"),
				"photo.* must not consume photo.processing.completed")
		})
	}
}

func TestWildcardResyncRepairsMissedNotification(t *testing.T) {
	b := newTestBus(t)
	ctx := ctxT(t)
	cfg := fastSub("repair")
	cfg.ResyncInterval = 200 * time.Millisecond
	sub, err := b.NewSubscriber(cfg)
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "photo.*")
	require.NoError(t, err)

	// A producer that writes the stream and the registry but whose
	// notification is lost: no PUBLISH at all.
	key := b.Config().StreamKey("photo.hidden")
	var want []string
	for range 50 {
		id := watermill.NewUUID()
		require.NoError(t, b.Client().XAdd(ctx, &redis.XAddArgs{Stream: key, Values: rawEvent(id, "photo.hidden")}).Err())
		want = append(want, id)
	}
	require.NoError(t, b.Client().SAdd(ctx, b.Config().RegistryKey(), "photo.hidden").Err())

	got := receive(t, ch, len(want), 10*time.Second)
	assert.Equal(t, want, idsOf(got))
	for _, m := range got {
		_, bad := bus.IsMalformed(m)
		assert.False(t, bad)
	}
}

func TestWildcardHandlersArePerGroupAndIsolated(t *testing.T) {
	b := newTestBus(t)
	ctx := ctxT(t)
	pub := b.Publisher()
	// Some types exist before the subscriptions start, the others appear later.
	byType := map[string][]string{}
	for _, typ := range []string{"photo.uploaded", "video.uploaded"} {
		byType[typ] = append(byType[typ], publishN(t, pub, typ, 3)...)
	}

	handlers := []struct {
		group, pattern string
		types          []string // what the pattern must match, written out by hand
	}{
		{"thumbs", "photo.*", []string{"photo.uploaded", "photo.deleted"}},
		{"audit", "photo.*", []string{"photo.uploaded", "photo.deleted"}},
		{"archive", "photo.>", []string{"photo.uploaded", "photo.deleted", "photo.processing.completed"}},
		{"notify", "*.uploaded", []string{"photo.uploaded", "video.uploaded"}},
	}
	all := []string{"photo.uploaded", "photo.deleted", "photo.processing.completed", "video.uploaded", "video.transcoded", "doc.uploaded.v2"}
	tallies := make([]*tally, len(handlers))
	for i, h := range handlers {
		sub, err := b.NewSubscriber(fastSub(h.group))
		require.NoError(t, err)
		ch, err := sub.Subscribe(ctx, h.pattern)
		require.NoError(t, err)
		tallies[i] = newTally()
		tallies[i].consume(ch, nil)
	}
	for _, typ := range all {
		byType[typ] = append(byType[typ], publishN(t, pub, typ, 4)...)
	}

	wants := make([]map[string]string, len(handlers))
	for i, h := range handlers {
		wants[i] = map[string]string{}
		for _, typ := range h.types {
			for _, id := range byType[typ] {
				wants[i][id] = typ
			}
		}
	}
	waitUntil(10*time.Second, func() bool {
		for i := range handlers {
			if tallies[i].unique() < len(wants[i]) {
				return false
			}
		}
		return true
	})
	for i, h := range handlers {
		checkExactly(t, h.group+" ("+h.pattern+")", tallies[i], wants[i])
		// A type the pattern does not match is never consumed by the group.
		for _, typ := range all {
			g := groupOn(t, b.Client(), b.Config().StreamKey(typ), h.group)
			if slices.Contains(h.types, typ) {
				assert.NotNil(t, g, "group %s should read %s", h.group, typ)
			} else {
				assert.Nil(t, g, "group %s (%s) must not read %s", h.group, h.pattern, typ)
			}
		}
	}
}

func TestWildcardUnsubscribeStopsEveryStream(t *testing.T) {
	b := newTestBus(t)
	ctx := ctxT(t)
	pub := b.Publisher()
	cfg := fastSub("unsub")
	// The default read block: a subscription is normally waiting in
	// XREADGROUP when it is cancelled.
	cfg.BlockTime = bus.DefaultBlockTime
	types := []string{"photo.a", "photo.b"}
	for _, typ := range types {
		publishN(t, pub, typ, 5)
	}

	sub, err := b.NewSubscriber(cfg)
	require.NoError(t, err)
	subCtx, unsubscribe := context.WithCancel(ctx)
	ch, err := sub.Subscribe(subCtx, "photo.*")
	require.NoError(t, err)
	receive(t, ch, 10, 10*time.Second)
	require.True(t, waitUntil(10*time.Second, func() bool {
		for _, typ := range types {
			if g := groupOn(t, b.Client(), b.Config().StreamKey(typ), "unsub"); g == nil || g.Pending != 0 {
				return false
			}
		}
		return true
	}), "the first 10 events were never acked")

	unsubscribe()
	assert.Empty(t, drainClosed(t, ch, 10*time.Second), "nothing was left to deliver")

	// Published after the channel closed: nobody in the group may read these.
	after := map[string]string{}
	for _, typ := range append(types, "photo.c") {
		for _, id := range publishN(t, pub, typ, 5) {
			after[id] = typ
		}
	}
	for _, typ := range types {
		g := groupOn(t, b.Client(), b.Config().StreamKey(typ), "unsub")
		require.NotNil(t, g)
		assert.EqualValues(t, 0, g.Pending, "%s: entries read by a cancelled subscription (pending)", typ)
		assert.EqualValues(t, 5, g.Lag, "%s: the group's unread entries after unsubscribe (lag)", typ)
	}
	assert.Nil(t, groupOn(t, b.Client(), b.Config().StreamKey("photo.c"), "unsub"),
		"a cancelled pattern subscription must not discover new types")

	// Another instance of the group picks up exactly those, at once.
	sub2, err := b.NewSubscriber(cfg)
	require.NoError(t, err)
	ch2, err := sub2.Subscribe(ctx, "photo.*")
	require.NoError(t, err)
	c := newTally()
	c.consume(ch2, nil)
	waitUntil(10*time.Second, func() bool { return c.unique() >= len(after) })
	checkExactly(t, "new subscription of the group", c, after)
}

// churnTypes returns 50 event types under photo, video and doc, of two and
// three tokens.
func churnTypes() []string {
	return []string{
		"photo.uploaded", "photo.deleted", "photo.renamed", "photo.shared", "photo.tagged", "photo.moved",
		"photo.restored", "photo.archived", "photo.processing.started", "photo.processing.completed",
		"photo.processing.failed", "photo.thumbnail.created", "photo.thumbnail.failed", "photo.share.granted",
		"photo.share.revoked", "photo.meta.changed", "photo.face.detected",

		"video.uploaded", "video.deleted", "video.renamed", "video.shared", "video.transcoded", "video.published",
		"video.archived", "video.restored", "video.transcode.started", "video.transcode.completed",
		"video.transcode.failed", "video.thumbnail.created", "video.caption.added", "video.caption.removed",
		"video.stream.started", "video.stream.ended", "video.stream.failed",

		"doc.uploaded", "doc.deleted", "doc.renamed", "doc.shared", "doc.signed", "doc.printed", "doc.archived",
		"doc.ocr.started", "doc.ocr.completed", "doc.ocr.failed", "doc.share.granted", "doc.share.revoked",
		"doc.version.created", "doc.version.restored", "doc.comment.added", "doc.comment.resolved",
	}
}

// TestWildcardManyTypesManyGroupsUnderChurn publishes 20,000 events over 50
// types from several goroutines while five consumer groups with overlapping
// patterns start, stop and hand over; every group must end up with exactly
// the events its pattern matches.
func TestWildcardManyTypesManyGroupsUnderChurn(t *testing.T) {
	const (
		events     = 20_000
		publishers = 4
	)
	b := newTestBus(t)
	ctx := ctxT(t)
	types := churnTypes()
	require.Len(t, types, 50)

	type group struct {
		name, pattern string
		tally         *tally
	}
	groups := []*group{
		{name: "thumbs", pattern: "photo.*"},
		{name: "photo-all", pattern: "photo.>"},
		{name: "notify", pattern: "*.uploaded"},
		{name: "audit", pattern: ">"},
		{name: "video", pattern: "video.>"},
	}
	for _, g := range groups {
		g.tally = newTally()
	}
	subCfg := func(g *group) bus.SubscriberConfig {
		c := fastSub(g.name)
		c.BatchSize = 100
		c.Concurrency = 4
		// An instance that stops leaves entries pending; a live one of the
		// same group claims them once idle this long.
		c.ClaimInterval = 250 * time.Millisecond
		c.ClaimMinIdle = 2 * time.Second
		return c
	}
	// start runs one instance (a Subscriber) of g; it returns the
	// subscriber, the cancel of its subscription and its delivery count.
	start := func(g *group) (*bus.Subscriber, context.CancelFunc, *atomic.Int64) {
		sub, err := b.NewSubscriber(subCfg(g))
		require.NoError(t, err)
		sctx, cancel := context.WithCancel(ctx)
		ch, err := sub.Subscribe(sctx, g.pattern)
		require.NoError(t, err)
		var n atomic.Int64
		g.tally.consume(ch, &n)
		return sub, cancel, &n
	}
	thumbs, photoAll, notify, audit, video := groups[0], groups[1], groups[2], groups[3], groups[4]

	// Before anything is published: the registry is empty.
	start(thumbs)
	photoAllA, _, photoAllAN := start(photoAll)
	_, notify1Cancel, notify1N := start(notify)
	_, _, notify2N := start(notify) // two instances share the group
	start(video)

	var (
		published atomic.Int64
		pubMu     sync.Mutex
		typeOf    = make(map[string]string, events)
		pubWG     sync.WaitGroup
	)
	start1 := time.Now()
	for p := range publishers {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			rng := rand.New(rand.NewPCG(uint64(p), 42))
			mine := map[string]string{}
			for left := events / publishers; left > 0; {
				typ := types[rng.IntN(len(types))]
				batch := min(left, 1+rng.IntN(8))
				if rng.IntN(2) == 0 {
					batch = 1 // the single-command path too
				}
				msgs := make([]*message.Message, batch)
				for i := range msgs {
					msgs[i] = newEvent(i)
				}
				if err := b.Publisher().Publish(typ, msgs...); err != nil {
					t.Errorf("publish %s: %v", typ, err)
					return
				}
				for _, m := range msgs {
					mine[m.UUID] = typ
				}
				left -= batch
				published.Add(int64(batch))
			}
			pubMu.Lock()
			for k, v := range mine {
				typeOf[k] = v
			}
			pubMu.Unlock()
		}()
	}

	// Churn while publishing.
	// A new group joins late: it reads every stream from its first entry.
	waitUntil(60*time.Second, func() bool { return published.Load() >= events/4 })
	start(audit)
	// One notify instance unsubscribes; the other claims what it left.
	notify1Cancel()
	// The photo-all instance closes half way; a new instance takes over.
	waitUntil(60*time.Second, func() bool { return photoAllAN.Load() >= 2500 || published.Load() >= events })
	require.NoError(t, photoAllA.Close())
	start(photoAll)

	pubWG.Wait()
	t.Logf("published %d events over %d types in %s", published.Load(), len(types), time.Since(start1).Round(time.Millisecond))
	require.Len(t, typeOf, events)

	wants := map[*group]map[string]string{}
	for _, g := range groups {
		wants[g] = map[string]string{}
		for id, typ := range typeOf {
			if refMatch(strings.Split(g.pattern, "."), strings.Split(typ, ".")) {
				wants[g][id] = typ
			}
		}
	}
	complete := waitUntil(60*time.Second, func() bool {
		for _, g := range groups {
			if g.tally.unique() < len(wants[g]) {
				return false
			}
		}
		return true
	})
	t.Logf("all groups complete=%v after %s; photo-all first instance handled %d, notify instances %d and %d",
		complete, time.Since(start1).Round(time.Millisecond), photoAllAN.Load(), notify1N.Load(), notify2N.Load())
	for _, g := range groups {
		checkExactly(t, g.name+" ("+g.pattern+")", g.tally, wants[g])
		for _, typ := range types {
			matches := refMatch(strings.Split(g.pattern, "."), strings.Split(typ, "."))
			if gi := groupOn(t, b.Client(), b.Config().StreamKey(typ), g.name); !matches && gi != nil {
				t.Errorf("group %s (%s) reads %s, which its pattern does not match", g.name, g.pattern, typ)
			}
		}
	}
	// Everything delivered was acked, including what stopped instances left.
	assert.True(t, waitUntil(15*time.Second, func() bool {
		for _, typ := range types {
			gs, err := b.Client().XInfoGroups(ctx, b.Config().StreamKey(typ)).Result()
			if err != nil {
				return false
			}
			for _, g := range gs {
				if g.Pending != 0 {
					return false
				}
			}
		}
		return true
	}), "entries left pending")
}

// newOwnClient returns a new client for the test Redis (the cluster when
// redistest uses one, so that redistest.Prefix cleans up what it writes),
// with the given connection name and hooks. It is closed in t.Cleanup.
func newOwnClient(t *testing.T, name string, hooks ...redis.Hook) redis.UniversalClient {
	t.Helper()
	var c redis.UniversalClient
	if redistest.IsCluster() {
		c = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: strings.Split(os.Getenv(redistest.EnvClusterAddrs), ","), ClientName: name,
		})
	} else {
		opts, err := redis.ParseURL(redistest.URL())
		require.NoError(t, err)
		opts.ClientName = name
		c = redis.NewClient(opts)
	}
	t.Cleanup(func() { _ = c.Close() })
	for _, h := range hooks {
		c.AddHook(h)
	}
	require.NoError(t, c.Ping(context.Background()).Err())
	return c
}

// connectionsNamed counts the connections named name on each Redis node.
func connectionsNamed(ctx context.Context, admin redis.UniversalClient, name string) (perNode []int, err error) {
	count := func(ctx context.Context, c *redis.Client) (int, error) {
		list, err := c.ClientList(ctx).Result()
		n := 0
		for line := range strings.SplitSeq(list, "\n") {
			if strings.Contains(line, " name="+name+" ") {
				n++
			}
		}
		return n, err
	}
	switch c := admin.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex
		err = c.ForEachShard(ctx, func(ctx context.Context, node *redis.Client) error {
			n, err := count(ctx, node)
			mu.Lock()
			perNode = append(perNode, n)
			mu.Unlock()
			return err
		})
		return perNode, err
	case *redis.Client:
		n, err := count(ctx, c)
		return []int{n}, err
	default:
		return nil, fmt.Errorf("unexpected client %T", admin)
	}
}

func TestWildcardConnectionsDoNotGrowWithStreams(t *testing.T) {
	const streams = 300
	ctx := ctxT(t)
	name := "eventbus-conns-" + strings.ToLower(watermill.NewShortUUID())
	named := newOwnClient(t, name)
	prefix := redistest.Prefix(t)

	// The subscribing bus uses only the named client; events come from
	// another bus (another client) on the same prefix.
	sb, err := bus.New(bus.Config{ServiceName: "conns", Client: named, StreamPrefix: prefix}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sb.Close() })
	admin := redistest.Client(t)
	pb, err := bus.New(bus.Config{ServiceName: "conns-pub", Client: admin, StreamPrefix: prefix}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pb.Close() })

	types := make([]string, streams)
	for i := range types {
		types[i] = fmt.Sprintf("load.t%03d", i)
	}
	want := map[string]string{}
	publishAll := func(types []string) {
		for _, typ := range types {
			for _, id := range publishN(t, pb.Publisher(), typ, 1) {
				want[id] = typ
			}
		}
	}
	publishAll(types[:streams/2]) // half the streams exist before subscribing

	sub, err := sb.NewSubscriber(fastSub("conns"))
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "load.*")
	require.NoError(t, err)
	c := newTally()
	c.consume(ch, nil)

	// The most connections named name seen on one node while consuming.
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			perNode, err := connectionsNamed(ctx, admin, name)
			if err != nil {
				t.Errorf("CLIENT LIST: %v", err)
				return
			}
			for _, n := range perNode {
				peak.Store(max(peak.Load(), int64(n)))
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	stopSampling := sync.OnceFunc(func() { close(stop); <-sampled })
	t.Cleanup(stopSampling)
	publishAll(types[streams/2:]) // the other half appear while it runs
	publishAll(types)
	publishAll(types)
	complete := waitUntil(30*time.Second, func() bool { return c.unique() >= len(want) })
	stopSampling()
	checkExactly(t, "load.*", c, want)
	assert.True(t, complete)
	t.Logf("%d streams, %d events: at most %d connections named %s on one node", streams, len(want), peak.Load(), name)
	assert.GreaterOrEqual(t, peak.Load(), int64(1), "the sampler saw no connection of the subscriber at all")
	assert.LessOrEqual(t, peak.Load(), int64(4), "connections must not grow with the number of streams")
}

// commandLog is a go-redis hook that records the commands a client sends:
// single commands, and pipelines as lists of command names. The handshake
// go-redis sends on each new connection (HELLO, CLIENT SETINFO, AUTH, SELECT)
// is not the bus's doing and is left out.
type commandLog struct {
	mu        sync.Mutex
	single    []string
	pipelines [][]string
}

func (l *commandLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !isHandshake(cmd) {
			l.mu.Lock()
			l.single = append(l.single, cmd.Name())
			l.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (l *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var names []string
		for _, c := range cmds {
			if !isHandshake(c) {
				names = append(names, c.Name())
			}
		}
		if len(names) > 0 {
			l.mu.Lock()
			l.pipelines = append(l.pipelines, names)
			l.mu.Unlock()
		}
		return next(ctx, cmds)
	}
}

func isHandshake(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "auth", "select", "client", "readonly":
		return true
	}
	return false
}

// take returns what was recorded since the last take and clears it.
func (l *commandLog) take() (single []string, pipelines [][]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	single, pipelines = l.single, l.pipelines
	l.single, l.pipelines = nil, nil
	return single, pipelines
}

func TestPublishKnownTypeCostsOneCommand(t *testing.T) {
	// With deduplication (the default) each write is the dedup script
	// (EVALSHA), without it a plain XADD.
	for _, tc := range []struct {
		write  string
		window time.Duration
	}{{"evalsha", 0}, {"xadd", -1}} {
		t.Run(tc.write, func(t *testing.T) { testPublishKnownTypeCostsOneCommand(t, tc.write, tc.window) })
	}
}

func testPublishKnownTypeCostsOneCommand(t *testing.T, xadd string, window time.Duration) {
	ctx := ctxT(t)
	log := &commandLog{}
	client := newOwnClient(t, "", log) // connected: the handshake is not counted
	// No mover: its polls of the schedule index would be counted.
	b, err := bus.New(bus.Config{ServiceName: "hook", Client: client, StreamPrefix: redistest.Prefix(t), SchedulePollInterval: -1, DedupWindow: window}, nil)
	require.NoError(t, err)
	// The server may not know the script yet (a fresh one answers the first
	// EVALSHA with NOSCRIPT, and the publisher sends EVAL): load it first.
	require.NoError(t, client.ScriptLoad(ctx, bus.DedupScript()).Err())
	t.Cleanup(func() { _ = b.Close() })
	pub := b.Publisher()
	log.take()

	// First publish of a type by this process: an HLEN of the type's schema
	// versions (repeated once per SchemaResyncInterval), then one round trip
	// that also records and announces the type.
	require.NoError(t, pub.Publish("photo.uploaded", newEvent(0)))
	single, pipes := log.take()
	assert.Equal(t, []string{"hlen"}, single)
	assert.Equal(t, [][]string{{xadd, "sadd", "publish"}}, pipes)
	ok, err := redistest.Client(t).SIsMember(ctx, b.Config().RegistryKey(), "photo.uploaded").Result()
	require.NoError(t, err)
	assert.True(t, ok, "the type is in the registry")

	// Every later single publish: exactly one XADD, nothing else.
	for i := range 20 {
		require.NoError(t, pub.Publish("photo.uploaded", newEvent(i)))
	}
	single, pipes = log.take()
	assert.Equal(t, slices.Repeat([]string{xadd}, 20), single)
	assert.Empty(t, pipes)

	// A batch to a known type: one pipeline of XADDs, no registry write.
	require.NoError(t, pub.Publish("photo.uploaded", newEvent(1), newEvent(2), newEvent(3)))
	single, pipes = log.take()
	assert.Empty(t, single)
	assert.Equal(t, [][]string{{xadd, xadd, xadd}}, pipes)

	// Another new type: registered once, again in the same round trip.
	require.NoError(t, pub.Publish("photo.deleted", newEvent(0)))
	require.NoError(t, pub.Publish("photo.deleted", newEvent(1)))
	single, pipes = log.take()
	assert.Equal(t, []string{"hlen", xadd}, single)
	assert.Equal(t, [][]string{{xadd, "sadd", "publish"}}, pipes)
}

var benchPayload = []byte(`{"photoId":"p1","size":42}`)

// BenchmarkPublishKnownType is the bus's publish of a single event to a type
// it has published before (validation, enrichment, one XADD).
func BenchmarkPublishKnownType(b *testing.B) {
	bb := newTestBus(b)
	pub := bb.Publisher()
	require.NoError(b, pub.Publish("bench.known", message.NewMessage(watermill.NewUUID(), benchPayload)))
	b.ReportAllocs()
	for b.Loop() {
		if err := pub.Publish("bench.known", message.NewMessage(watermill.NewUUID(), benchPayload)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishRawXAdd is the floor: a plain go-redis XADD of the same
// fields, with the same trimming.
func BenchmarkPublishRawXAdd(b *testing.B) {
	bb := newTestBus(b)
	client := bb.Client()
	key := bb.Config().StreamKey("bench.raw")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		fields := []any{
			bus.AttrID, watermill.NewUUID(), bus.AttrType, "bench.raw", bus.AttrSource, "test-svc",
			bus.AttrSpecVersion, bus.SpecVersion, bus.AttrTime, time.Now().UTC().Format(time.RFC3339Nano),
			bus.AttrDataContentType, bus.DefaultContentType, bus.FieldData, benchPayload,
		}
		if err := client.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: fields, MaxLen: bus.DefaultMaxLen, Approx: true}).Err(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWildcardReadOverManyStreamsIsBoundedPerStream pins what one
// subscriber reads ahead when a pattern matches more streams than BatchSize:
// one XREADGROUP names every stream and its COUNT applies per stream, so the
// room left (BatchSize minus in flight) is split between the streams, at
// least one entry each. What is read but not acked stays within
// max(BatchSize, number of streams).
func TestWildcardReadOverManyStreamsIsBoundedPerStream(t *testing.T) {
	const streams = 60
	b := newTestBus(t)
	ctx := ctxT(t)
	var keys []string
	for i := range streams {
		typ := fmt.Sprintf("many.t%02d", i)
		publishN(t, b.Publisher(), typ, 2)
		keys = append(keys, b.Config().StreamKey(typ))
	}
	cfg := fastSub("bounded")
	cfg.BatchSize = 10
	sub, err := b.NewSubscriber(cfg)
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "many.*")
	require.NoError(t, err)

	// Hold the first message unacked: the subscription has read by now, and
	// reads no more while it holds more than BatchSize/2.
	var first *message.Message
	select {
	case first = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no message delivered")
	}
	pending := int64(0)
	for _, k := range keys {
		p, err := b.Client().XPending(ctx, k, "bounded").Result()
		require.NoError(t, err)
		pending += p.Count
	}
	t.Logf("%d streams, BatchSize %d: %d entries read ahead", streams, cfg.BatchSize, pending)
	assert.LessOrEqual(t, pending, int64(max(cfg.BatchSize, streams)))
	first.Ack()
	rest := receive(t, ch, 2*streams-1, 10*time.Second)
	assert.Len(t, rest, 2*streams-1)
}

// While one stream's backlog is read (it is "hot": reads name only it), a
// quiet stream's new event is still picked up by the periodic read of every
// stream, long before the backlog is drained.
func TestWildcardBacklogDoesNotStarveAQuietStream(t *testing.T) {
	const backlog = 20_000
	b := newTestBus(t)
	ctx := ctxT(t)
	pub := b.Publisher()
	publishN(t, pub, "starve.quiet", 1)
	for i := 0; i < backlog; i += 500 {
		msgs := make([]*message.Message, 500)
		for j := range msgs {
			msgs[j] = newEvent(i + j)
		}
		require.NoError(t, pub.Publish("starve.big", msgs...))
	}
	cfg := fastSub("starve")
	cfg.BatchSize = 10
	sub, err := b.NewSubscriber(cfg)
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "starve.*")
	require.NoError(t, err)

	late := newEvent(-1)
	bigSeen, published := 0, false
	deadline := time.After(time.Minute)
	for {
		select {
		case m := <-ch:
			m.Ack()
			if m.UUID == late.UUID {
				t.Logf("the quiet stream's event came after %d of %d backlog events", bigSeen, backlog)
				assert.Less(t, bigSeen, backlog, "the backlog starved the quiet stream")
				return
			}
			if m.Metadata.Get(bus.MetaTopic) == "starve.big" {
				bigSeen++
			}
			if !published && bigSeen > 0 {
				require.NoError(t, pub.Publish("starve.quiet", late))
				published = true
			}
		case <-deadline:
			t.Fatalf("the quiet stream's event never came (%d backlog events seen)", bigSeen)
		}
	}
}
