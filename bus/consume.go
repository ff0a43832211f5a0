package bus

import (
	"context"
	"sync"
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

	held *held         // in flight and acks not yet written (bus/held.go)
	wake chan struct{} // the dispatcher tells the reader that room freed up
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
		held:         newHeld(),
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
