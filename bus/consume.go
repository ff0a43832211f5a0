package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// delivery is one stream entry on its way to the handler.
type delivery struct {
	stream string // stream key
	entry  redis.XMessage
	count  int64 // Redis delivery count of the entry for this group
}

type entryRef struct{ stream, id string }

// subscription is one Subscribe call. Its reader goroutine owns every Redis
// call (and the stream list); its dispatcher goroutine owns delivery to the
// output channel. They share the in-flight set and the ack buffer under mu.
type subscription struct {
	s         *Subscriber
	ctx       context.Context
	topic     string
	isPattern bool

	out          chan *message.Message
	entries      chan delivery // reader -> dispatcher
	newTypes     chan string   // registry watcher -> reader
	stop         chan struct{} // closed when ctx is done or the subscriber closes
	hardStop     chan struct{} // closed when the close drain deadline passes
	dispatchDone chan struct{}
	readerDone   chan struct{} // closed when the reader has made its last read
	stopOnce     sync.Once

	// started is set once the groups exist (start succeeded): by Subscribe,
	// or by the reader when Redis was unreachable at Subscribe.
	started bool

	// reader-owned
	streams  []string
	known    map[string]bool
	lastRead map[string]string // stream key -> id of the newest entry read with ">"
	cluster  bool
	// hot are the streams whose last read returned all it asked for: they
	// probably hold more. While there are any, reads name only them (see
	// read); acks may then be held back a little (acksDue).
	hot       []string
	hotNext   int // where the next read of hot streams starts
	lastScan  time.Time
	lastFlush time.Time

	mu       sync.Mutex
	inflight map[entryRef]struct{}
	acks     map[string][]string
	ackIDs   int // ids in acks
	wake     chan struct{}
}

// While a subscription works through a backlog spread over many streams,
// every read hands out about one entry per stream, and flushing the acks
// before each read would cost Redis one XACK command per event. Acks are
// then held until they average ackSpread ids per stream, or for at most
// ackMaxDelay (they stay covered by the keepalive meanwhile; a crash in
// that window redelivers those events, as it would any unacked one).
const (
	ackSpread   = 8
	ackMaxDelay = 100 * time.Millisecond
)

func newSubscription(s *Subscriber, ctx context.Context, topic string, pattern bool) *subscription {
	_, cluster := s.client.(*redis.ClusterClient)
	return &subscription{
		s:            s,
		ctx:          ctx,
		topic:        topic,
		isPattern:    pattern,
		out:          make(chan *message.Message),
		entries:      make(chan delivery, s.cfg.BatchSize),
		newTypes:     make(chan string, 256),
		stop:         make(chan struct{}),
		hardStop:     make(chan struct{}),
		dispatchDone: make(chan struct{}),
		readerDone:   make(chan struct{}),
		known:        map[string]bool{},
		lastRead:     map[string]string{},
		cluster:      cluster,
		inflight:     map[entryRef]struct{}{},
		acks:         map[string][]string{},
		wake:         make(chan struct{}, 1),
	}
}

// start creates the consumer group on every stream the subscription covers
// (and, for a pattern, registers with the watcher before it lists the
// registry, so that no new type falls between the two).
func (sub *subscription) start(ctx context.Context) error {
	if !sub.isPattern {
		return sub.addStreams(ctx, []string{sub.topic}, sub.s.cfg.StartFrom)
	}
	if err := sub.s.watcher.add(ctx, sub); err != nil {
		return err
	}
	types, err := sub.s.client.SMembers(ctx, sub.s.bus.RegistryKey()).Result()
	if err != nil {
		return err
	}
	return sub.addStreams(ctx, sub.matching(types), sub.s.cfg.StartFrom)
}

func (sub *subscription) abort() {
	if sub.isPattern {
		sub.s.watcher.remove(sub)
	}
}

func (sub *subscription) matching(types []string) []string {
	var out []string
	for _, t := range types {
		if ValidateType(t) == nil && Match(sub.topic, t) && !sub.known[sub.s.bus.StreamKey(t)] {
			out = append(out, t)
		}
	}
	return out
}

// addStreams creates the group on each new stream (MKSTREAM, so a type not
// yet published can be subscribed) and adds it to the read set.
func (sub *subscription) addStreams(ctx context.Context, types []string, start string) error {
	if len(types) == 0 {
		return nil
	}
	pipe := sub.s.client.Pipeline()
	cmds := make([]*redis.StatusCmd, len(types))
	for i, t := range types {
		cmds[i] = pipe.XGroupCreateMkStream(ctx, sub.s.bus.StreamKey(t), sub.s.cfg.ConsumerGroup, start)
	}
	_, execErr := pipe.Exec(ctx)
	for i, t := range types {
		err := cmds[i].Err()
		if err == nil && execErr != nil && !isBusyGroup(execErr) {
			// No connection (say AUTH failed): go-redis sets no command's error.
			err = execErr
		}
		if err != nil && !isBusyGroup(err) {
			return err
		}
		key := sub.s.bus.StreamKey(t)
		if err == nil { // a new group: loss accounting starts now (retention.go)
			baselineGroup(ctx, sub.s.client, sub.s.bus, key, sub.s.cfg.ConsumerGroup)
		}
		if !sub.known[key] {
			sub.known[key] = true
			sub.streams = append(sub.streams, key)
		}
	}
	return nil
}

func isBusyGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP") }
func isNoGroup(err error) bool   { return err != nil && strings.Contains(err.Error(), "NOGROUP") }

func (sub *subscription) halt() {
	sub.stopOnce.Do(func() { close(sub.stop) })
}

// readLoop is the reader goroutine.
func (sub *subscription) readLoop() {
	cfg := sub.s.cfg
	go func() {
		select {
		case <-sub.ctx.Done():
		case <-sub.s.closing:
		case <-sub.dispatchDone:
		}
		sub.halt()
	}()
	defer func() {
		if sub.isPattern {
			sub.s.watcher.remove(sub)
		}
		close(sub.readerDone)
		<-sub.dispatchDone
		// Final flush: what the handlers finished is acked, the rest stays pending.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sub.flushAcks(ctx)
	}()

	// The keepalive has its own goroutine: the reader may wait (on Redis, or
	// to hand entries to a slow handler) longer than ClaimMinIdle.
	keepDone := make(chan struct{})
	go func() {
		defer close(keepDone)
		t := time.NewTicker(cfg.ClaimMinIdle / 3)
		defer t.Stop()
		for {
			select {
			case <-sub.stop:
				return
			case <-t.C:
				sub.keepalive(context.Background())
			}
		}
	}()
	defer func() { <-keepDone }()

	if !sub.started && !sub.waitStart() {
		return
	}
	low := cfg.BatchSize / 2
	now := time.Now()
	nextClaim := now.Add(cfg.ClaimInterval)
	nextResync := now.Add(cfg.ResyncInterval)
	nextDead := now
	backoff := retryInitial
	ctx := context.Background() // reads end on stop at the latest BlockTime later; see Close
	sub.claim(ctx, true)
	for {
		select {
		case <-sub.stop:
			return
		default:
		}
		now = time.Now()
		if cfg.ClaimInterval > 0 && now.After(nextClaim) {
			sub.claim(ctx, false)
			nextClaim = now.Add(cfg.ClaimInterval)
		}
		if cfg.HeartbeatTTL > 0 && !now.Before(nextDead) {
			sub.claimDead(ctx)
			nextDead = now.Add(cfg.heartbeatEvery())
		}
		if sub.isPattern && now.After(nextResync) {
			sub.resync(ctx)
			nextResync = now.Add(cfg.ResyncInterval)
		}
		sub.drainNewTypes(ctx)

		if len(sub.streams) > 0 && sub.inflightCount() <= low {
			if sub.acksDue(now) {
				sub.flushAcks(ctx)
			}
			n, polled, err := sub.read(ctx)
			if err != nil {
				sub.s.logger.Error("Read failed, retrying", err, watermill.LogFields{"topic": sub.topic, "backoff": backoff.String()})
				if isNoGroup(err) {
					sub.recreateGroups(ctx)
				}
				if !sleepCtx(sub.stop, jitter(backoff)) {
					return
				}
				backoff = nextBackoff(backoff)
				continue
			}
			backoff = retryInitial
			if n > 0 || !polled {
				continue
			}
			// Several slot groups were polled without BLOCK; nothing came: wait a little.
		}
		t := time.NewTimer(cfg.BlockTime)
		select {
		case <-sub.stop:
			t.Stop()
			return
		case <-sub.wake:
		case typ := <-sub.newTypes:
			sub.addNewTypes(ctx, []string{typ})
		case <-t.C:
			sub.flushAcks(ctx)
		}
		t.Stop()
	}
}

// waitStart retries start, with backoff and jitter, until Redis answers
// (true) or the subscription stops or meets an error that waiting does not
// cure (false: the subscription ends, logged).
func (sub *subscription) waitStart() bool {
	backoff := retryInitial
	for {
		if !sleepCtx(sub.stop, jitter(backoff)) {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := sub.start(ctx)
		cancel()
		if err == nil {
			sub.started = true
			sub.s.started.Add(1)
			sub.s.logger.Info("Redis answers; the subscription consumes", watermill.LogFields{"topic": sub.topic})
			return true
		}
		sub.abort()
		if !IsTransient(err) {
			sub.s.logger.Error("Subscription ended: Redis refused it, which waiting will not fix", err, watermill.LogFields{"topic": sub.topic})
			return false
		}
		backoff = nextBackoff(backoff)
	}
}

func (sub *subscription) drainNewTypes(ctx context.Context) {
	var types []string
	for {
		select {
		case t := <-sub.newTypes:
			types = append(types, t)
		default:
			sub.addNewTypes(ctx, types)
			return
		}
	}
}

func (sub *subscription) addNewTypes(ctx context.Context, types []string) {
	if m := sub.matching(types); len(m) > 0 {
		if err := sub.addStreams(ctx, m, "0"); err != nil {
			sub.s.logger.Error("Cannot add new streams; the resync will retry", err, watermill.LogFields{"topic": sub.topic})
		}
	}
}

func (sub *subscription) resync(ctx context.Context) {
	types, err := sub.s.client.SMembers(ctx, sub.s.bus.RegistryKey()).Result()
	if err != nil {
		sub.s.logger.Error("Registry resync failed", err, watermill.LogFields{"topic": sub.topic})
		return
	}
	sub.addNewTypes(ctx, types)
}

// recreateGroups re-creates the consumer group on every stream that lost it
// (XGROUP DESTROY, a stream deleted, Redis restarted without persistence).
// The group resumes where this subscription was, not at 0: after the newest
// entry it read from the stream, and the entries it still holds (in flight,
// or handled with their ack not yet written) are put back in the group's
// pending list as its own (XCLAIM … FORCE), so they are neither lost nor
// delivered again. A stream this subscription has read nothing from since
// it started gets the group at StartFrom ("0" by default: every retained
// entry is delivered again; docs/reliability.md). When another instance of
// the group re-creates it first, its position wins (BUSYGROUP here).
func (sub *subscription) recreateGroups(ctx context.Context) {
	cfg := sub.s.cfg
	held := map[string][]string{}
	sub.mu.Lock()
	for ref := range sub.inflight {
		held[ref.stream] = append(held[ref.stream], ref.id)
	}
	for stream, ids := range sub.acks {
		held[stream] = append(held[stream], ids...)
	}
	sub.mu.Unlock()
	for _, k := range sub.streams {
		start, known := sub.lastRead[k]
		if !known {
			start = cfg.StartFrom
		}
		err := sub.s.client.XGroupCreateMkStream(ctx, k, cfg.ConsumerGroup, start).Err()
		switch {
		case isBusyGroup(err):
		case err != nil:
			sub.s.logger.Error("Cannot recreate consumer group", err, watermill.LogFields{"stream": k})
			continue
		default:
			sub.s.logger.Error("Consumer group was gone; re-created", nil, watermill.LogFields{
				"stream": k, "start_after": start, "position_known": known, "held_entries": len(held[k])})
			baselineGroup(ctx, sub.s.client, sub.s.bus, k, cfg.ConsumerGroup)
		}
		if ids := held[k]; len(ids) > 0 {
			args := make([]any, 0, len(ids)+7)
			args = append(args, "XCLAIM", k, cfg.ConsumerGroup, cfg.Consumer, 0)
			for _, id := range ids {
				args = append(args, id)
			}
			args = append(args, "FORCE", "JUSTID")
			if err := sub.s.client.Do(ctx, args...).Err(); err != nil {
				sub.s.logger.Error("Cannot put the held entries back in the re-created group", err, watermill.LogFields{"stream": k})
			}
		}
	}
}

// hotScanInterval bounds how long reads name only the hot streams: then one
// read names every stream again, so that a stream which got busy meanwhile
// is not starved by a backlog elsewhere.
const hotScanInterval = 100 * time.Millisecond

// read runs one XREADGROUP (on a cluster, one per slot group, pipelined)
// and hands the entries over.
//
// Which streams it names: while some streams are hot (their last read
// returned all it asked for), at most room of them, in turn, without BLOCK;
// otherwise, and every hotScanInterval, all of the subscription's streams.
// Why: COUNT applies to each stream and Redis 7 has no cap across streams,
// so a read naming 1,000 busy streams returns up to 1,000 entries whatever
// the room, and the reader then stalls handing them over while the
// dispatcher runs dry. Naming every stream in one blocking read is what
// keeps the latency of a quiet stream low when nothing is hot. The room is
// split between the streams named (at least 1 each); entries read beyond
// it are kept fresh by the keepalive goroutine, never claimed by another
// consumer while queued here.
//
// A single command blocks (BLOCK BlockTime) when nothing is hot; several
// slot groups are polled without BLOCK, and read reports so.
func (sub *subscription) read(ctx context.Context) (n int, polled bool, err error) {
	cfg := sub.s.cfg
	room := cfg.BatchSize - sub.inflightCount()
	streams, block := sub.streams, cfg.BlockTime
	now := time.Now()
	full := len(sub.hot) == 0 || now.Sub(sub.lastScan) >= min(hotScanInterval, cfg.BlockTime)
	switch {
	case !full:
		streams, block = sub.nextHot(max(room, 1)), -1
	case len(sub.hot) > 0:
		block = -1 // a scan while busy: nothing to wait for
	}
	if full {
		sub.lastScan = now
	}
	count := max(1, room/len(streams))
	groups := [][]string{streams}
	if sub.cluster {
		groups = bySlot(streams)
	}
	var results []redis.XStream
	if len(groups) == 1 {
		res, err := sub.s.client.XReadGroup(ctx, sub.readArgs(groups[0], count, block)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, false, err
		}
		results = res
	} else {
		polled = block >= 0
		pipe := sub.s.client.Pipeline()
		cmds := make([]*redis.XStreamSliceCmd, len(groups))
		for i, g := range groups {
			cmds[i] = pipe.XReadGroup(ctx, sub.readArgs(g, count, -1))
		}
		_, execErr := pipe.Exec(ctx)
		for _, c := range cmds {
			res, err := c.Result()
			if err == nil && execErr != nil && !errors.Is(execErr, redis.Nil) {
				err = execErr // no connection: go-redis sets no command's error
			}
			if err != nil && !errors.Is(err, redis.Nil) {
				return 0, true, err
			}
			results = append(results, res...)
		}
	}
	var ds []delivery
	for _, st := range results {
		for _, e := range st.Messages {
			ds = append(ds, delivery{stream: st.Stream, entry: e, count: 1})
		}
		if len(st.Messages) > 0 {
			sub.lastRead[st.Stream] = st.Messages[len(st.Messages)-1].ID
		}
	}
	sub.updateHot(streams, full, results, count)
	sub.push(ds...)
	return len(ds), polled, nil
}

// nextHot returns up to k hot streams, taking turns.
func (sub *subscription) nextHot(k int) []string {
	if k >= len(sub.hot) {
		sub.hotNext = 0
		return sub.hot
	}
	i := sub.hotNext % len(sub.hot)
	sub.hotNext = i + k
	if i+k <= len(sub.hot) {
		return sub.hot[i : i+k]
	}
	return append(slices.Clone(sub.hot[i:]), sub.hot[:i+k-len(sub.hot)]...)
}

// updateHot records what a read naming streams (every stream, when full)
// and asking count entries of each returned: a stream that gave count
// entries is hot, one that gave fewer is not.
func (sub *subscription) updateHot(named []string, full bool, results []redis.XStream, count int) {
	busy := make(map[string]bool, len(results))
	for _, st := range results {
		if len(st.Messages) >= count {
			busy[st.Stream] = true
		}
	}
	if full {
		var hot []string
		for _, k := range sub.streams {
			if busy[k] {
				hot = append(hot, k)
			}
		}
		sub.hot, sub.hotNext = hot, 0
		return
	}
	idle := make(map[string]bool, len(named))
	for _, k := range named {
		if !busy[k] {
			idle[k] = true
		}
	}
	if len(idle) == 0 {
		return
	}
	hot := make([]string, 0, len(sub.hot)-len(idle))
	for _, k := range sub.hot {
		if !idle[k] {
			hot = append(hot, k)
		}
	}
	sub.hot = hot
}

func bySlot(streams []string) [][]string {
	m := map[int][]string{}
	var order []int
	for _, k := range streams {
		s := keySlot(k)
		if _, ok := m[s]; !ok {
			order = append(order, s)
		}
		m[s] = append(m[s], k)
	}
	out := make([][]string, 0, len(order))
	for _, s := range order {
		out = append(out, m[s])
	}
	return out
}

func (sub *subscription) readArgs(streams []string, count int, block time.Duration) *redis.XReadGroupArgs {
	args := make([]string, 0, 2*len(streams))
	args = append(args, streams...)
	for range streams {
		args = append(args, ">")
	}
	return &redis.XReadGroupArgs{
		Group:    sub.s.cfg.ConsumerGroup,
		Consumer: sub.s.cfg.Consumer,
		Streams:  args,
		Count:    int64(count),
		Block:    block,
	}
}

// push records ds as in flight, all of them before the first is handed over
// (so the keepalive covers entries still waiting here), and queues them for
// the dispatcher. It reports false when the subscription stopped first.
func (sub *subscription) push(ds ...delivery) bool {
	sub.mu.Lock()
	for _, d := range ds {
		sub.inflight[entryRef{d.stream, d.entry.ID}] = struct{}{}
	}
	sub.mu.Unlock()
	for _, d := range ds {
		select {
		case sub.entries <- d:
		case <-sub.stop:
			return false
		}
	}
	return true
}

// holds reports whether ref is in flight here or waits for its ack.
func (sub *subscription) holds(ref entryRef) bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if _, ok := sub.inflight[ref]; ok {
		return true
	}
	for _, id := range sub.acks[ref.stream] {
		if id == ref.id {
			return true
		}
	}
	return false
}

func (sub *subscription) inflightCount() int {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return len(sub.inflight)
}

// done removes d from the in-flight set and, when ack is true, queues its ack.
func (sub *subscription) done(d delivery, ack bool) {
	low := sub.s.cfg.BatchSize / 2
	sub.mu.Lock()
	delete(sub.inflight, entryRef{d.stream, d.entry.ID})
	if ack {
		sub.acks[d.stream] = append(sub.acks[d.stream], d.entry.ID)
		sub.ackIDs++
	}
	n := len(sub.inflight)
	sub.mu.Unlock()
	if n <= low {
		select {
		case sub.wake <- struct{}{}:
		default:
		}
	}
}

// acksDue reports whether the reader should flush the acks before its next
// read: always, unless it is working through a backlog (see ackSpread).
func (sub *subscription) acksDue(now time.Time) bool {
	if len(sub.hot) == 0 {
		return true
	}
	sub.mu.Lock()
	ids, streams := sub.ackIDs, len(sub.acks)
	sub.mu.Unlock()
	return ids >= ackSpread*streams || now.Sub(sub.lastFlush) >= ackMaxDelay
}

// flushAcks sends the buffered acks, one XACK per stream, pipelined.
func (sub *subscription) flushAcks(ctx context.Context) {
	sub.mu.Lock()
	if len(sub.acks) == 0 {
		sub.mu.Unlock()
		return
	}
	acks, n := sub.acks, sub.ackIDs
	sub.acks, sub.ackIDs = make(map[string][]string, len(acks)), 0
	sub.mu.Unlock()
	sub.lastFlush = time.Now()
	var err error
	if len(acks) == 1 {
		for stream, ids := range acks {
			err = sub.s.client.XAck(ctx, stream, sub.s.cfg.ConsumerGroup, ids...).Err()
		}
	} else {
		pipe := sub.s.client.Pipeline()
		for stream, ids := range acks {
			pipe.XAck(ctx, stream, sub.s.cfg.ConsumerGroup, ids...)
		}
		_, err = pipe.Exec(ctx)
	}
	if err != nil {
		// Keep them for the next flush (XACK is idempotent). What a final
		// flush cannot ack stays pending and is claimed after ClaimMinIdle.
		sub.mu.Lock()
		for stream, ids := range acks {
			sub.acks[stream] = append(ids, sub.acks[stream]...)
		}
		sub.ackIDs += n
		sub.mu.Unlock()
		sub.s.logger.Error("Ack failed; retrying with the next flush", err, watermill.LogFields{"topic": sub.topic})
	}
}

// keepalive resets the idle time of every entry this subscription holds (in
// flight, or handled with its ack still buffered), so no other consumer
// claims an entry that a slow handler is still working on.
// XCLAIM ... JUSTID does not increment the delivery counter.
func (sub *subscription) keepalive(ctx context.Context) {
	sub.mu.Lock()
	byStream := map[string][]string{}
	for ref := range sub.inflight {
		byStream[ref.stream] = append(byStream[ref.stream], ref.id)
	}
	// Handled but not yet acked in Redis: they must not go idle either.
	for stream, ids := range sub.acks {
		byStream[stream] = append(byStream[stream], ids...)
	}
	sub.mu.Unlock()
	if len(byStream) == 0 {
		return
	}
	pipe := sub.s.client.Pipeline()
	for stream, ids := range byStream {
		pipe.XClaimJustID(ctx, &redis.XClaimArgs{Stream: stream, Group: sub.s.cfg.ConsumerGroup, Consumer: sub.s.cfg.Consumer, Messages: ids})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		sub.s.logger.Error("Keepalive of in-flight entries failed", err, watermill.LogFields{"topic": sub.topic})
	}
}

// claim takes over entries that other consumers of the group left pending
// for longer than ClaimMinIdle (a crashed or stopped instance). With own set
// (once, when the subscription starts) it takes back instead what this
// consumer itself left pending: entries an earlier subscription read but
// never finished.
func (sub *subscription) claim(ctx context.Context, own bool) {
	cfg := sub.s.cfg
	minIdle := cfg.ClaimMinIdle
	consumer := ""
	if own {
		minIdle, consumer = 0, cfg.Consumer
	}
	room := cfg.BatchSize - sub.inflightCount()
	if room <= 0 || len(sub.streams) == 0 {
		return
	}
	pipe := sub.s.client.Pipeline()
	cmds := make([]*redis.XPendingExtCmd, len(sub.streams))
	for i, k := range sub.streams {
		cmds[i] = pipe.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: k, Group: cfg.ConsumerGroup, Idle: minIdle, Start: "-", End: "+", Count: int64(room), Consumer: consumer,
		})
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range cmds {
		pending, err := c.Result()
		if err != nil {
			if !errors.Is(err, redis.Nil) {
				sub.s.logger.Error("XPENDING failed", err, watermill.LogFields{"stream": sub.streams[i]})
			}
			continue
		}
		counts := map[string]int64{}
		var ids []string
		for _, p := range pending {
			switch {
			case own:
			case p.Consumer == cfg.Consumer:
				// Ours, idle for ClaimMinIdle, so no handler holds it (the
				// keepalive would have reset it): a read whose reply was
				// lost. Take it back unless this subscription holds it.
				if sub.holds(entryRef{sub.streams[i], p.ID}) {
					continue
				}
			case cfg.ShouldClaim != nil && !cfg.ShouldClaim(p):
				continue
			}
			ids = append(ids, p.ID)
			counts[p.ID] = p.RetryCount
		}
		if ids = sub.dropGone(ctx, sub.streams[i], ids); len(ids) == 0 {
			continue
		}
		msgs, err := sub.s.client.XClaim(ctx, &redis.XClaimArgs{
			Stream: sub.streams[i], Group: cfg.ConsumerGroup, Consumer: cfg.Consumer, MinIdle: minIdle, Messages: ids,
		}).Result()
		if err != nil {
			sub.s.logger.Error("XCLAIM failed", err, watermill.LogFields{"stream": sub.streams[i]})
			continue
		}
		ds := make([]delivery, 0, len(msgs))
		for _, m := range msgs {
			sub.s.logger.Info("Claimed a pending entry", sub.entryLogFields(sub.streams[i], m).Add(watermill.LogFields{"own": own}))
			ds = append(ds, delivery{stream: sub.streams[i], entry: m, count: counts[m.ID] + 1})
		}
		if !sub.push(ds...) {
			return
		}
	}
}

// dispatchLoop is the dispatcher goroutine: it decodes entries and delivers
// them, in stream order, at most Concurrency unacked at a time. Each
// delivered message is then awaited (its ack or nack) by one of at most
// Concurrency awaiter goroutines, started when none is idle and kept for
// the subscription's life: no goroutine is started per event.
func (sub *subscription) dispatchLoop() {
	cfg := sub.s.cfg
	sem := make(chan struct{}, cfg.Concurrency)
	// Never blocks: a job is queued only after sem admitted it, so at most
	// Concurrency jobs are queued or being awaited.
	jobs := make(chan awaitJob, cfg.Concurrency)
	var (
		wg      sync.WaitGroup
		idle    atomic.Int32 // awaiters waiting for a job
		started int
	)
	awaiter := func() {
		defer wg.Done()
		for {
			idle.Add(1)
			j, ok := <-jobs
			idle.Add(-1)
			if !ok {
				return
			}
			sub.await(j.d, j.msg, j.cancel)
			<-sem
		}
	}
	defer func() {
		close(jobs)
		drained := make(chan struct{})
		go func() { wg.Wait(); close(drained) }()
		t := time.NewTimer(cfg.CloseTimeout)
		select {
		case <-drained:
		case <-t.C:
			close(sub.hardStop)
			<-drained
		}
		t.Stop()
		// Close the channel only once the reader has stopped reading: the
		// caller may take a closed channel to mean that nothing more is
		// read for this subscription (an unsubscribe).
		<-sub.readerDone
		sub.s.open.Add(-1) // before the close: whoever sees it closed sees the count down
		if sub.started {
			sub.s.started.Add(-1)
		}
		close(sub.out)
		close(sub.dispatchDone)
	}()
	for {
		var d delivery
		select {
		case <-sub.stop:
			return
		case d = <-sub.entries:
		}
		select {
		case sem <- struct{}{}:
		case <-sub.stop:
			sub.done(d, false)
			return
		}
		if g, ok := d.entry.Values[AttrRedriveGroup].(string); ok && g != cfg.ConsumerGroup {
			// A redrive meant for another handler's group: not ours to redo.
			sub.done(d, true)
			<-sem
			continue
		}
		msg, cancel := sub.decode(d)
		if !sub.send(msg) {
			cancel()
			sub.done(d, false)
			<-sem
			return
		}
		if idle.Load() == 0 && started < cfg.Concurrency {
			started++
			wg.Add(1)
			go awaiter()
		}
		jobs <- awaitJob{d: d, msg: msg, cancel: cancel}
	}
}

// awaitJob is a delivered message for an awaiter goroutine to await.
type awaitJob struct {
	d      delivery
	msg    *message.Message
	cancel context.CancelFunc
}

func (sub *subscription) send(msg *message.Message) bool {
	select {
	case sub.out <- msg:
		return true
	case <-sub.stop:
		return false
	}
}

// await waits for the handler's ack or nack of d. A nack delivers the entry
// again after NackDelay, through XCLAIM so that Redis counts the delivery.
func (sub *subscription) await(d delivery, msg *message.Message, cancel context.CancelFunc) {
	stop := sub.stop
	defer func() { cancel() }()
	for {
		select {
		case <-msg.Acked():
			sub.done(d, true)
			return
		case <-msg.Nacked():
			if !sleepCtx(stop, sub.s.cfg.NackDelay) {
				sub.done(d, false)
				return
			}
			d.count = sub.redeliveryCount(d)
			cancel()
			msg, cancel = sub.decode(d)
			if !sub.send(msg) {
				sub.done(d, false)
				return
			}
		case <-stop:
			// Closing: keep waiting for the handler until the drain deadline.
			stop = nil
		case <-sub.hardStop:
			sub.done(d, false)
			return
		}
	}
}

// redeliveryCount bumps the entry's delivery counter in Redis and returns it.
func (sub *subscription) redeliveryCount(d delivery) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg := sub.s.cfg
	if err := sub.s.client.XClaim(ctx, &redis.XClaimArgs{
		Stream: d.stream, Group: cfg.ConsumerGroup, Consumer: cfg.Consumer, Messages: []string{d.entry.ID},
	}).Err(); err != nil {
		sub.s.logger.Error("Cannot count the redelivery in Redis", err, sub.entryLogFields(d.stream, d.entry))
	}
	return d.count + 1
}

// entryLogFields are the fields of a log line about one entry: the event's
// id, type and trace id (from its traceparent), the handler's consumer group,
// and where the entry is.
func (sub *subscription) entryLogFields(stream string, e redis.XMessage) watermill.LogFields {
	id, _ := e.Values[AttrID].(string)
	tp, _ := e.Values[AttrTraceParent].(string)
	traceID := ""
	if len(tp) >= 35 && tp[2] == '-' { // "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"
		traceID = tp[3:35]
	}
	return watermill.LogFields{
		"event_id": id, "event_type": strings.TrimPrefix(stream, sub.s.bus.StreamPrefix),
		"handler": sub.s.cfg.ConsumerGroup, "trace_id": traceID, "stream": stream, "stream_id": e.ID,
	}
}

// decode turns an entry into a message; it never fails (see Marshaller).
// The message's context carries the Subscribe context's values; it is
// cancelled once the message is acked or nacked, or at the close deadline.
func (sub *subscription) decode(d delivery) (*message.Message, context.CancelFunc) {
	var msg *message.Message
	var err error
	if limit := sub.s.bus.MaxEventSize; limit > 0 {
		if size := entrySize(d.entry.Values); size > limit {
			err = fmt.Errorf("entry of %d bytes exceeds MaxEventSize %d", size, limit)
		}
	}
	if err == nil {
		msg, err = sub.s.cfg.Unmarshaller.Unmarshal(d.entry.Values)
	}
	if err != nil || msg == nil {
		reason := "unmarshaller returned no message"
		if err != nil {
			reason = err.Error()
		}
		msg = malformed(d.entry.Values, reason)
	}
	if _, bad := IsMalformed(msg); !bad && len(msg.Payload) > 0 {
		// Malformed for every handler, raw or typed: data that its own
		// datacontenttype says is JSON must parse (the publisher refuses
		// it; a raw XADD may not).
		if ct := msg.Metadata.Get(AttrDataContentType); IsJSONContentType(ct) && !json.Valid(msg.Payload) {
			msg.Metadata.Set(MetaMalformed, "data is not valid JSON although its datacontenttype is "+strconv.Quote(ct))
		}
	}
	topic := strings.TrimPrefix(d.stream, sub.s.bus.StreamPrefix)
	if t := msg.Metadata.Get(AttrType); t != "" && t != topic {
		if _, bad := IsMalformed(msg); !bad {
			msg.Metadata.Set(MetaMalformed, "type attribute "+strconv.Quote(t)+" does not match the stream's type "+strconv.Quote(topic))
		}
	}
	msg.Metadata.Set(MetaStreamID, d.entry.ID)
	msg.Metadata.Set(MetaTopic, topic)
	msg.Metadata.Set(MetaDelivery, strconv.FormatInt(d.count, 10))
	msg.Metadata.Set(MetaGroup, sub.s.cfg.ConsumerGroup)
	// Not cancelled when the subscription stops: a closing subscriber lets
	// in-flight handlers finish (drain) until CloseTimeout, and only then,
	// or once the message is acked or nacked, is the context cancelled.
	ctx, cancel := context.WithCancel(context.WithoutCancel(sub.ctx))
	msg.SetContext(ctx)
	return msg, cancel
}

// entrySize is the size of an entry as the publisher measures an event:
// every field name and value.
func entrySize(values map[string]any) int {
	n := 0
	for k, v := range values {
		n += len(k)
		if s, ok := v.(string); ok {
			n += len(s)
		}
	}
	return n
}
