package bus

// Reading: one XREADGROUP per round (per slot group on a cluster), which
// streams it names (hot-stream planning) and how many entries it asks for.

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

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
	refs := make([]entryRef, len(ds))
	for i, d := range ds {
		refs[i] = entryRef{d.stream, d.entry.ID}
	}
	sub.held.add(refs...)
	for _, d := range ds {
		select {
		case sub.entries <- d:
		case <-sub.stop:
			return false
		}
	}
	return true
}
