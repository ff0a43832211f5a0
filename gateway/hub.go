package gateway

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/cejson"
)

const (
	// hubReadCount is the largest COUNT of one XREAD of the push stream
	// (lowered to Config.ClientBuffer when that is smaller, so that one
	// read alone never overflows a stream that has written everything).
	hubReadCount = 256
	// Backoff of the push-stream reader after a Redis error.
	hubMinBackoff = 50 * time.Millisecond
	hubMaxBackoff = 5 * time.Second
)

// hub is the one reader of the push stream per gateway process. It follows
// the stream with XREAD BLOCK (no consumer group: every gateway process sees
// every entry and nothing is acked), renders each event once as an SSE
// message, and queues it for every registered Client that wants it, through
// that client's bounded sendQueue. Queueing never blocks, so a slow browser
// never slows the hub or the other browsers.
type hub struct {
	client redis.UniversalClient
	key    string
	block  time.Duration
	count  int64 // XREAD COUNT
	logger watermill.LoggerAdapter

	pos   atomic.Pointer[streamID] // every event up to pos has been dispatched
	reads readClock                // when the last read of the stream completed

	mu      sync.RWMutex
	clients map[*client]*sendQueue // guarded by mu
	// byUser and byRoom index clients by the addressing Client.Wants
	// matches (a stream's user and rooms are fixed when it opens), so a
	// batch without a broadcast is offered only to the streams of its
	// users and rooms instead of to every stream: the per-stream filter
	// would otherwise cost streams × entries (docs/scale.md, design B).
	byUser map[string]map[*client]struct{} // guarded by mu
	byRoom map[string]map[*client]struct{} // guarded by mu
	// targets is dispatch's scratch set; only the reader goroutine
	// calls dispatch.
	targets    map[*client]struct{}
	startedRun bool // guarded by mu
	closed     bool // guarded by mu: no more clients are added

	running   chan struct{} // closed once run knows its starting position
	done      chan struct{} // closed when run returns
	closing   chan struct{} // closed by close
	closeOnce sync.Once
}

func newHub(rdb redis.UniversalClient, key string, block time.Duration, clientBuffer int, logger watermill.LoggerAdapter) *hub {
	return &hub{
		client:  rdb,
		key:     key,
		block:   block,
		count:   int64(max(1, min(hubReadCount, clientBuffer))),
		logger:  logger,
		clients: make(map[*client]*sendQueue),
		byUser:  make(map[string]map[*client]struct{}),
		byRoom:  make(map[string]map[*client]struct{}),
		targets: make(map[*client]struct{}),
		running: make(chan struct{}),
		done:    make(chan struct{}),
		closing: make(chan struct{}),
	}
}

func (h *hub) run(ctx context.Context) error {
	h.mu.Lock()
	switch {
	case h.closed:
		h.mu.Unlock()
		return ErrGatewayClosed
	case h.startedRun:
		h.mu.Unlock()
		return errors.New("gateway: Run called while the gateway is already running")
	}
	h.startedRun = true
	h.mu.Unlock()
	defer close(h.done)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-h.closing:
			cancel()
		case <-ctx.Done():
		}
	}()

	err := h.loop(ctx)
	reason := ErrGatewayClosed
	select {
	case <-h.closing:
	default:
		err = nil // stopped by the caller's ctx
	}
	h.mu.Lock()
	h.closed = true
	for c := range h.clients {
		c.Close(reason)
	}
	h.mu.Unlock()
	return err
}

func (h *hub) loop(ctx context.Context) error {
	fields := watermill.LogFields{"stream": h.key}
	backoff := time.Duration(0)
	wait := func() bool {
		backoff = min(max(2*backoff, hubMinBackoff), hubMaxBackoff)
		t := time.NewTimer(backoff)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}

	// Start after the last entry that exists now.
	for {
		info, err := streamInfoOf(ctx, h.client, h.key)
		if err == nil {
			h.pos.Store(&info.lastGenerated)
			h.reads.mark()
			break
		}
		if ctx.Err() != nil {
			return ErrGatewayClosed
		}
		h.logger.Error("Cannot read the push stream's position; retrying", err, fields)
		if !wait() {
			return ErrGatewayClosed
		}
	}
	backoff = 0
	close(h.running)

	checkGap := false
	var batch []pushFrame // reused: one XREAD's events
	for {
		pos := *h.pos.Load()
		if checkGap {
			// After an outage, entries this reader never saw may have been
			// trimmed: streams that relied on it must resume (and report
			// the gap) rather than silently miss them.
			info, err := streamInfoOf(ctx, h.client, h.key)
			if err == nil {
				checkGap = false
				if info.lostAfter(pos) {
					h.logger.Info("Push stream trimmed past the reader's position; closing the open streams so that they resume", fields.Add(watermill.LogFields{"position": pos.String()}))
					h.closeAll(errPushStreamGap)
				}
			} else if ctx.Err() == nil {
				h.logger.Error("Cannot read the push stream's position; retrying", err, fields)
				if !wait() {
					return ErrGatewayClosed
				}
				continue
			}
		}
		res, err := h.client.XRead(ctx, &redis.XReadArgs{
			Streams: []string{h.key, pos.String()},
			Count:   h.count,
			Block:   h.block,
		}).Result()
		if ctx.Err() != nil {
			return ErrGatewayClosed
		}
		if errors.Is(err, redis.Nil) {
			h.reads.mark()
			backoff = 0
			continue
		}
		if err != nil {
			h.logger.Error("Cannot read the push stream; retrying", err, fields)
			checkGap = true
			if !wait() {
				return ErrGatewayClosed
			}
			continue
		}
		backoff = 0
		clear(batch)
		batch = batch[:0]
		last := pos
		for _, s := range res {
			for _, x := range s.Messages {
				sid, err := parseStreamID(x.ID)
				if err != nil { // Redis only makes valid ids
					h.logger.Error("Push stream entry with an invalid id", err, fields)
					continue
				}
				last = sid
				f, err := renderPushEntry(x, sid)
				if err != nil {
					h.logger.Info("Skipping a push stream entry that is not a valid event", fields.Add(watermill.LogFields{"entry": x.ID, "reason": err.Error()}))
					continue
				}
				batch = append(batch, f)
			}
		}
		h.dispatch(batch)
		h.pos.Store(&last)
		h.reads.mark()
	}
}

// dispatch queues the frames of batch, in order, for every client that
// wants them: one lock and one wake-up per client and batch. A client
// whose queue would overflow is closed with errSlowClient. A batch with a
// broadcast goes to every client (each wants it); any other batch only to
// the clients its users and rooms index.
func (h *hub) dispatch(batch []pushFrame) {
	if len(batch) == 0 {
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	broadcast := false
	for i := range batch {
		if batch[i].broadcast {
			broadcast = true
			break
		}
	}
	if broadcast {
		for c, q := range h.clients {
			h.offer(c, q, batch)
		}
		return
	}
	for i := range batch {
		e := &batch[i]
		if e.user != "" {
			for c := range h.byUser[e.user] {
				h.targets[c] = struct{}{}
			}
		}
		if e.room != "" {
			for c := range h.byRoom[e.room] {
				h.targets[c] = struct{}{}
			}
		}
	}
	for c := range h.targets {
		h.offer(c, h.clients[c], batch)
	}
	clear(h.targets)
}

// offer queues what c wants of batch on q (sendQueue.push filters with
// Client.Wants), unless c's stream is ending.
func (h *hub) offer(c *client, q *sendQueue, batch []pushFrame) {
	select {
	case <-c.done:
		return // its stream is ending
	default:
	}
	if !q.push(c, batch) {
		c.overflow()
	}
}

// started reports whether run was called.
func (h *hub) started() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.startedRun
}

// lastReadAt is when the last read of the stream completed (zero before).
func (h *hub) lastReadAt() time.Time { return h.reads.at() }

// isRunning reports whether run follows the stream now.
func (h *hub) isRunning() bool {
	select {
	case <-h.running:
	default:
		return false
	}
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

// add registers c, whose events the hub queues on q; it returns false once
// the hub is closed.
func (h *hub) add(c *client, q *sendQueue) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.clients[c] = q
	if u := c.principal.User; u != "" {
		index(h.byUser, u, c)
	}
	for _, r := range c.roomList {
		index(h.byRoom, r, c)
	}
	return true
}

func (h *hub) remove(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; !ok {
		return
	}
	delete(h.clients, c)
	if u := c.principal.User; u != "" {
		unindex(h.byUser, u, c)
	}
	for _, r := range c.roomList {
		unindex(h.byRoom, r, c)
	}
}

func index(m map[string]map[*client]struct{}, key string, c *client) {
	set := m[key]
	if set == nil {
		set = make(map[*client]struct{})
		m[key] = set
	}
	set[c] = struct{}{}
}

func unindex(m map[string]map[*client]struct{}, key string, c *client) {
	set := m[key]
	delete(set, c)
	if len(set) == 0 {
		delete(m, key)
	}
}

func (h *hub) closeAll(reason error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.clients {
		c.Close(reason)
	}
}

func (h *hub) clientCount() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.clients)
}

// position returns the id up to which every entry has been dispatched.
func (h *hub) position() streamID {
	if p := h.pos.Load(); p != nil {
		return *p
	}
	return streamID{}
}

func (h *hub) close(timeout time.Duration) error {
	h.closeOnce.Do(func() { close(h.closing) })
	h.mu.Lock()
	started := h.startedRun
	if !started {
		h.closed = true
	}
	h.mu.Unlock()
	if !started {
		return nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-h.done:
		return nil
	case <-t.C:
		return fmt.Errorf("gateway: close: the push-stream reader did not stop within %s", timeout)
	}
}

// streamID is a Redis Stream entry id, <ms>-<seq>.
type streamID struct{ ms, seq uint64 }

// parseStreamID parses "<ms>-<seq>" or "<ms>" (sequence 0) with
// bus.ParseStreamID.
func parseStreamID(s string) (streamID, error) {
	ms, seq, err := bus.ParseStreamID(s)
	return streamID{ms, seq}, err
}

func (a streamID) less(b streamID) bool {
	return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq)
}

func (a streamID) String() string {
	return strconv.FormatUint(a.ms, 10) + "-" + strconv.FormatUint(a.seq, 10)
}

// maxJSONTimeMs is 9999-12-31T23:59:59.999Z, the last instant
// time.Time.MarshalJSON can write.
const maxJSONTimeMs = 253402300799999

// time returns the wall-clock time encoded in the id (when Redis made it),
// capped at the year 9999.
func (a streamID) time() time.Time {
	return time.UnixMilli(int64(min(a.ms, maxJSONTimeMs))).UTC()
}

// streamInfo is what a stream resume needs to know about the push stream.
type streamInfo struct {
	lastGenerated streamID // id of the last entry ever added; 0-0 if none
	first         streamID // first retained entry; valid when length > 0
	length        int64
	entriesAdded  int64 // entries ever added; 0 when Redis (< 7) does not say
}

// lostAfter reports whether entries after id may have been trimmed from the
// stream: some entry newer than id was removed. When Redis says nothing was
// ever removed (entries-added equals length) the answer is exact; otherwise
// it is "id is older than the first retained entry", which may report a
// loss where only id itself was trimmed.
func (i streamInfo) lostAfter(id streamID) bool {
	if i.entriesAdded > 0 && i.entriesAdded == i.length {
		return false
	}
	if i.length > 0 {
		return id.less(i.first)
	}
	return id.less(i.lastGenerated)
}

// streamInfoOf reads the push stream's position and first retained entry in
// one round trip. A missing stream is an empty one.
func streamInfoOf(ctx context.Context, c redis.UniversalClient, key string) (streamInfo, error) {
	pipe := c.Pipeline()
	infoCmd := pipe.XInfoStream(ctx, key)
	firstCmd := pipe.XRangeN(ctx, key, "-", "+", 1)
	_, _ = pipe.Exec(ctx) // each command's error is read below
	info, err := infoCmd.Result()
	if err != nil {
		if bus.IsNoSuchKey(err) {
			return streamInfo{}, nil
		}
		return streamInfo{}, fmt.Errorf("XINFO STREAM %s: %w", key, err)
	}
	first, err := firstCmd.Result()
	if err != nil {
		return streamInfo{}, fmt.Errorf("XRANGE %s - + COUNT 1: %w", key, err)
	}
	var si streamInfo
	if si.lastGenerated, err = parseStreamID(info.LastGeneratedID); err != nil {
		return streamInfo{}, fmt.Errorf("XINFO STREAM %s: last-generated-id: %w", key, err)
	}
	si.entriesAdded = info.EntriesAdded
	si.length = info.Length
	if len(first) > 0 {
		if si.first, err = parseStreamID(first[0].ID); err != nil {
			return streamInfo{}, fmt.Errorf("XRANGE %s: %w", key, err)
		}
		si.length = max(si.length, 1)
	} else {
		si.length = 0
	}
	return si, nil
}

// renderPushEntry decodes x (whose id is sid) and renders it as the SSE
// message every stream that wants it is sent.
func renderPushEntry(x redis.XMessage, sid streamID) (pushFrame, error) {
	ev, err := decodePushEntry(x)
	if err != nil {
		return pushFrame{}, err
	}
	msg, err := appendEvent(make([]byte, 0, len(ev.id)+len(ev.typ)+len(ev.data)+32), ev.id, ev.typ, ev.data)
	if err != nil {
		return pushFrame{}, err
	}
	return pushFrame{
		frame:     &frame{id: sid, msg: msg},
		room:      ev.room,
		user:      ev.user,
		broadcast: ev.broadcast,
	}, nil
}

// pushEvent is a push-stream entry decoded once for every browser.
type pushEvent struct {
	id        string // the push-stream entry id: the SSE id
	typ       string
	room      string
	user      string
	broadcast bool
	data      []byte // the event in CloudEvents structured-mode JSON
}

// decodePushEntry decodes an entry with the bus's Marshaller and renders it
// as CloudEvents JSON.
func decodePushEntry(x redis.XMessage) (pushEvent, error) {
	msg, _ := bus.Marshaller{}.Unmarshal(x.Values) // never fails: see IsMalformed
	if err := bus.MalformedError(msg); err != nil {
		return pushEvent{}, err
	}
	md := msg.Metadata
	if err := bus.ValidateType(md.Get(bus.AttrType)); err != nil {
		return pushEvent{}, err
	}
	data, err := cejson.Marshal(msg)
	if err != nil {
		return pushEvent{}, fmt.Errorf("encode event %s as JSON: %w", msg.UUID, err)
	}
	return pushEvent{
		id:        x.ID,
		typ:       md.Get(bus.AttrType),
		room:      md.Get(bus.AttrRoom),
		user:      md.Get(bus.AttrUser),
		broadcast: md.Get(bus.AttrBroadcast) == "true",
		data:      data,
	}, nil
}
