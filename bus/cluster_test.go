//go:build cluster

// Cluster tests run only with -tags cluster, against the Redis Cluster named
// by REDIS_CLUSTER_ADDRS (with the tag, every test of this package runs
// against that cluster, Watermill's universal suite included):
//
//	make test-cluster
//	# = scripts/with-redis.sh scripts/with-redis-cluster.sh go test -race -count=1 -tags cluster ./bus/ ./internal/...
//
// With the tag but without the variable they fail rather than skip.

package bus_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/logtest"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// keyChecker is a go-redis hook that records, for every command the bus
// sends, the keys it names (for the multi-key commands the bus uses) and any
// cross-slot or redirect error.
type keyChecker struct {
	mu       sync.Mutex
	multiKey [][]string // keys of each multi-key command
	errs     []string
	commands map[string]int
}

func (k *keyChecker) DialHook(next redis.DialHook) redis.DialHook { return next }
func (k *keyChecker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		k.record(cmd)
		return err
	}
}
func (k *keyChecker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			k.record(c)
		}
		return err
	}
}

func (k *keyChecker) record(cmd redis.Cmder) {
	args := cmd.Args()
	name := strings.ToLower(cmd.Name())
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.commands == nil {
		k.commands = map[string]int{}
	}
	k.commands[name]++
	if err := cmd.Err(); err != nil && (strings.Contains(err.Error(), "CROSSSLOT") || strings.Contains(err.Error(), "MOVED") || strings.Contains(err.Error(), "ASK")) {
		k.errs = append(k.errs, fmt.Sprintf("%v: %v", args, err))
	}
	// XREADGROUP GROUP g c [COUNT n] [BLOCK ms] [NOACK] STREAMS k1..kn id1..idn
	if name == "xreadgroup" {
		for i, a := range args {
			if s, ok := a.(string); ok && strings.EqualFold(s, "streams") {
				rest := args[i+1:]
				keys := make([]string, 0, len(rest)/2)
				for _, r := range rest[:len(rest)/2] {
					keys = append(keys, fmt.Sprint(r))
				}
				k.multiKey = append(k.multiKey, keys)
				break
			}
		}
	}
}

// snapshot copies what was recorded (the hook keeps recording meanwhile).
func (k *keyChecker) snapshot() (errs []string, multiKey [][]string, commands map[string]int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	commands = make(map[string]int, len(k.commands))
	for n, c := range k.commands {
		commands[n] = c
	}
	return append([]string(nil), k.errs...), append([][]string(nil), k.multiKey...), commands
}

// clusterClient returns the test's *redis.ClusterClient (failing, with how to
// start one, when REDIS_CLUSTER_ADDRS is unset).
func clusterClient(t *testing.T) *redis.ClusterClient {
	t.Helper()
	if !redistest.IsCluster() {
		t.Fatal("REDIS_CLUSTER_ADDRS is not set: run `make test-cluster`, or " +
			"scripts/with-redis-cluster.sh go test -tags cluster ./bus/")
	}
	c, ok := redistest.Client(t).(*redis.ClusterClient)
	require.True(t, ok, "redistest.Client is not a cluster client")
	return c
}

// checkedClusterClient returns clusterClient(t) with a keyChecker hooked in.
func checkedClusterClient(t *testing.T) (*redis.ClusterClient, *keyChecker) {
	t.Helper()
	c := clusterClient(t)
	checker := &keyChecker{}
	c.AddHook(checker)
	return c, checker
}

// newClusterBus returns a bus of service "cluster" on c under prefix, logging
// to logger (nil: none), closed at cleanup.
func newClusterBus(t *testing.T, c *redis.ClusterClient, prefix string, logger watermill.LoggerAdapter) *bus.Bus {
	t.Helper()
	b, err := bus.New(bus.Config{ServiceName: "cluster", Client: c, StreamPrefix: prefix}, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// masterOf maps every slot to its master (CLUSTER SHARDS), as "ip:port".
func masterOf(t *testing.T, c *redis.ClusterClient) func(slot int64) string {
	t.Helper()
	shards, err := c.ClusterShards(t.Context()).Result()
	require.NoError(t, err)
	return func(slot int64) string {
		for _, sh := range shards {
			for _, r := range sh.Slots {
				if r.Start <= slot && slot <= r.End {
					for _, n := range sh.Nodes {
						if n.Role == "master" {
							return fmt.Sprintf("%s:%d", n.IP, n.Port)
						}
					}
				}
			}
		}
		return "?"
	}
}

// clusterTypes returns n event types whose streams (under prefix) spread over
// every master, and how many land on each.
func clusterTypes(t *testing.T, c *redis.ClusterClient, prefix, base string, n int) ([]string, map[string]int) {
	t.Helper()
	master := masterOf(t, c)
	types := make([]string, n)
	perMaster := map[string]int{}
	for i := range types {
		types[i] = fmt.Sprintf("%s.t%02d", base, i)
		slot, err := c.ClusterKeySlot(t.Context(), prefix+types[i]).Result()
		require.NoError(t, err)
		perMaster[master(slot)]++
	}
	return types, perMaster
}

// crc16Slot is the cluster slot of key (CRC16/XMODEM mod 16384; the keys
// here have no hash tag), computed locally to search for colliding names.
func crc16Slot(key string) int {
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// sameSlotTypes returns two types under base whose streams share a slot.
func sameSlotTypes(prefix, base string) (string, string) {
	seen := map[int]string{}
	for i := 0; ; i++ {
		typ := fmt.Sprintf("%s.s%d", base, i)
		slot := crc16Slot(prefix + typ)
		if other, ok := seen[slot]; ok {
			return other, typ
		}
		seen[slot] = typ
	}
}

// TestClusterPatternOverAllMasters subscribes a pattern over 40 types whose
// streams spread over every master; events published before the subscription
// and to types that appear after it all arrive, and no error is logged (the
// cluster rejects a command whose keys span slots with CROSSSLOT).
func TestClusterPatternOverAllMasters(t *testing.T) {
	c, checker := checkedClusterClient(t)
	prefix := redistest.Prefix(t)
	logger := &logtest.Recorder{}
	b := newClusterBus(t, c, prefix, logger)
	ctx := ctxT(t)

	types, perMaster := clusterTypes(t, c, prefix, "cl.many", 38)
	// Two more types whose streams share a slot, so that one XREADGROUP
	// names several streams.
	a, b2 := sameSlotTypes(prefix, "cl.many")
	types = append(types, a, b2)
	t.Logf("streams per master: %v; %s and %s share slot %d", perMaster, a, b2, crc16Slot(prefix+a))
	require.Len(t, perMaster, 3, "want streams on 3 masters")
	for addr, k := range perMaster {
		require.Positive(t, k, "no stream on master %s", addr)
	}

	want := map[string]bool{}
	publish := func(types []string, perType int) {
		for _, typ := range types {
			msgs := make([]*message.Message, perType)
			for i := range msgs {
				msgs[i] = message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"i":%d}`, i))
				want[msgs[i].UUID] = true
			}
			require.NoError(t, b.Publisher().Publish(typ, msgs...))
		}
	}
	// Half the types exist before the subscription, half appear after it.
	publish(types[:20], 3)
	publish(types[38:], 3) // the same-slot pair exists before the subscription
	cfg := fastSub("cluster-many")
	cfg.ClaimInterval = 200 * time.Millisecond
	cfg.ClaimMinIdle = time.Second
	sub, err := b.NewSubscriber(cfg)
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "cl.many.*")
	require.NoError(t, err)
	publish(types[20:38], 3)
	publish(types[:20], 2)

	got := map[string]int{}
	deadline := time.After(20 * time.Second)
	for len(got) < len(want) {
		select {
		case m := <-ch:
			got[m.UUID]++
			m.Ack()
		case <-deadline:
			t.Fatalf("received %d of %d events", len(got), len(want))
		}
	}
	for id := range want {
		assert.Positive(t, got[id], "event %s not received", id)
	}
	assert.Empty(t, logger.Errors(), "errors logged by the bus")

	// Every XREADGROUP named streams of one slot only.
	errs, multiKey, commands := checker.snapshot()
	assert.Empty(t, errs, "cross-slot or redirect errors")
	require.NotEmpty(t, multiKey)
	multi := 0
	for _, keys := range multiKey {
		slots := map[int64]bool{}
		for _, k := range keys {
			s, err := c.ClusterKeySlot(t.Context(), k).Result()
			require.NoError(t, err)
			slots[s] = true
		}
		assert.Len(t, slots, 1, "XREADGROUP over keys of %d slots: %v", len(slots), keys)
		if len(keys) > 1 {
			multi++
		}
	}
	assert.Positive(t, multi, "no XREADGROUP named several streams of one slot")
	t.Logf("commands sent: %v; XREADGROUPs: %d (%d over several streams of one slot)", commands, len(multiKey), multi)
}

// TestClusterEveryCommandOneSlot drives every path of the bus that talks to
// Redis (publish with the push copy and the registry, pattern and plain
// subscriptions, batched acks over several streams, nack with redelivery,
// keepalive of a slow handler, claim of a dead consumer's entries) and checks
// that no command was rejected for spanning slots and nothing was logged.
func TestClusterEveryCommandOneSlot(t *testing.T) {
	c, checker := checkedClusterClient(t)
	prefix := redistest.Prefix(t)
	logger := &logtest.Recorder{}
	b := newClusterBus(t, c, prefix, logger)
	ctx := ctxT(t)
	types, perMaster := clusterTypes(t, c, prefix, "cl.cmd", 12)
	require.Len(t, perMaster, 3)

	// A consumer that reads and dies (closes without acking): its entries are
	// claimed by the next one.
	dead, err := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "cmd", Consumer: "dead", BlockTime: 20 * time.Millisecond, CloseTimeout: 10 * time.Millisecond})
	require.NoError(t, err)
	deadCh, err := dead.Subscribe(ctx, "cl.cmd.*")
	require.NoError(t, err)

	ids := map[string]bool{}
	for i, typ := range types {
		opts := []bus.Option{}
		if i%3 == 0 {
			opts = append(opts, bus.WithRoom("r1")) // also written to the push stream
		}
		id, err := bus.Publish(ctx, b.Publisher(), typ, map[string]int{"i": i}, opts...)
		require.NoError(t, err)
		ids[id] = true
	}
	select {
	case m := <-deadCh:
		_ = m // taken, never acked
	case <-time.After(10 * time.Second):
		t.Fatal("the dead consumer got nothing")
	}
	require.NoError(t, dead.Close())

	cfg := bus.SubscriberConfig{
		ConsumerGroup: "cmd", Consumer: "live", BlockTime: 20 * time.Millisecond,
		ClaimInterval: 100 * time.Millisecond, ClaimMinIdle: 300 * time.Millisecond,
		NackDelay: 10 * time.Millisecond, Concurrency: 4, CloseTimeout: 2 * time.Second,
	}
	sub, err := b.NewSubscriber(cfg)
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "cl.cmd.*")
	require.NoError(t, err)
	// A plain subscription of the same consumer beside the pattern: both read types[0].
	plain, err := sub.Subscribe(ctx, types[0])
	require.NoError(t, err)

	got := map[string]bool{}
	nacked := map[string]bool{}
	deadline := time.After(20 * time.Second)
	for len(got) < len(ids) {
		var m *message.Message
		select {
		case m = <-ch:
		case m = <-plain:
		case <-deadline:
			t.Fatalf("received %d of %d events", len(got), len(ids))
		}
		switch {
		case !nacked[m.UUID] && len(nacked) < 2:
			nacked[m.UUID] = true
			m.Nack()
		default:
			if len(got) == 0 {
				time.Sleep(2 * cfg.ClaimMinIdle) // slow: kept fresh by the keepalive
			}
			got[m.UUID] = true
			m.Ack()
		}
	}
	require.Eventually(t, func() bool {
		for _, typ := range types {
			p, err := c.XPending(ctx, b.Config().StreamKey(typ), "cmd").Result()
			if err != nil || p.Count != 0 {
				return false
			}
		}
		return true
	}, 5*time.Second, 20*time.Millisecond, "entries left pending")
	require.NoError(t, sub.Close())

	assert.Empty(t, logger.Errors(), "errors logged by the bus")
	errs, _, commands := checker.snapshot()
	assert.Empty(t, errs, "cross-slot or redirect errors")
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("commands sent: %v", commands)
	for _, want := range []string{"evalsha", "sadd", "publish", "xreadgroup", "xack", "xclaim", "xpending", "xgroup"} {
		assert.Contains(t, names, want, "the test did not exercise %s", want)
	}
}

// TestClusterReadHonorsBatchSize checks the documented bound "BatchSize is
// the bound on entries read but not yet acked" for a pattern over streams of
// many slots: the subscriber polls each slot group with its own XREADGROUP,
// and each must not get the whole room.
func TestClusterReadHonorsBatchSize(t *testing.T) {
	c := clusterClient(t)
	prefix := redistest.Prefix(t)
	b := newClusterBus(t, c, prefix, nil)
	ctx := ctxT(t)
	types, _ := clusterTypes(t, c, prefix, "cl.bound", 30)
	for _, typ := range types {
		for range 3 {
			_, err := bus.Publish(ctx, b.Publisher(), typ, map[string]int{"i": 1})
			require.NoError(t, err)
		}
	}
	cfg := fastSub("bound")
	cfg.BatchSize = 4
	cfg.Consumer = "bounded"
	sub, err := b.NewSubscriber(cfg)
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "cl.bound.*")
	require.NoError(t, err)
	// Take one message and hold it (never ack): COUNT is split over all the
	// streams (at least 1 each), so the reader holds at most
	// max(BatchSize, streams) — not BatchSize per slot group (3 per stream here).
	var held *message.Message
	select {
	case held = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received")
	}
	time.Sleep(300 * time.Millisecond)
	var pending int64
	for _, typ := range types {
		p, err := c.XPending(ctx, b.Config().StreamKey(typ), "bound").Result()
		require.NoError(t, err)
		pending += p.Consumers["bounded"]
	}
	assert.LessOrEqual(t, pending, int64(max(cfg.BatchSize, len(types))), "entries read and not acked, BatchSize %d, %d streams", cfg.BatchSize, len(types))
	held.Ack()
}

// TestClusterDedup publishes every event twice (singly and in batches, some
// addressed so that they have a push copy) to types whose streams spread
// over every master: each stream and the push stream hold each id once, and
// no command was rejected for spanning slots (the dedup key is hash-tagged
// to its stream, so the script names keys of one slot).
func TestClusterDedup(t *testing.T) {
	c, checker := checkedClusterClient(t)
	prefix := redistest.Prefix(t)
	b := newClusterBus(t, c, prefix, nil)
	types, perMaster := clusterTypes(t, c, prefix, "cl.dedup", 9)
	require.Len(t, perMaster, 3)
	pub := b.Publisher()
	for round := range 2 {
		for i, typ := range types {
			single := message.NewMessage(typ+"-single", []byte(`{}`))
			require.NoError(t, pub.Publish(typ, single))
			batch := []*message.Message{
				message.NewMessage(typ+"-b1", []byte(`{}`)),
				message.NewMessage(typ+"-b2", []byte(`{}`)),
			}
			if i%2 == 0 {
				batch[1].Metadata.Set(bus.AttrUser, "u1")
			}
			require.NoError(t, pub.Publish(typ, batch...))
			_, dup := bus.IsDuplicate(batch[0])
			assert.Equal(t, round == 1, dup, "round %d, %s", round, batch[0].UUID)
		}
	}
	pushed := 0
	for i, typ := range types {
		xs, err := c.XRange(t.Context(), b.Config().StreamKey(typ), "-", "+").Result()
		require.NoError(t, err)
		var ids []string
		for _, x := range xs {
			ids = append(ids, fmt.Sprint(x.Values[bus.AttrID]))
		}
		assert.Equal(t, []string{typ + "-single", typ + "-b1", typ + "-b2"}, ids)
		if i%2 == 0 {
			pushed++
		}
	}
	n, err := c.XLen(t.Context(), b.Config().PushKey()).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(pushed), n, "push copies")
	assert.Equal(t, int64(3*len(types)), pub.Duplicates())
	errs, _, commands := checker.snapshot()
	assert.Empty(t, errs, "cross-slot or redirect errors")
	assert.Positive(t, commands["evalsha"], "the dedup script was not used")
}
