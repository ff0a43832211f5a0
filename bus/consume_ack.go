package bus

// Acks and the keepalive: what the subscription holds, the batched XACK
// buffer, and the XCLAIM JUSTID that keeps held entries from being claimed.

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"
)

// holds reports whether ref is in flight here or waits for its ack.
func (sub *subscription) holds(ref entryRef) bool { return sub.held.holds(ref) }

func (sub *subscription) inflightCount() int { return sub.held.inflightCount() }

// done removes d from the in-flight set and, when ack is true, queues its
// ack; the reader is woken when the in-flight entries fall to half a batch.
func (sub *subscription) done(d delivery, ack bool) {
	if sub.held.done(entryRef{d.stream, d.entry.ID}, ack) <= sub.s.cfg.BatchSize/2 {
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
	ids, streams := sub.held.ackLoad()
	return ids >= ackSpread*streams || now.Sub(sub.lastFlush) >= ackMaxDelay
}

// flushAcks sends the buffered acks, one XACK per stream, pipelined.
func (sub *subscription) flushAcks(ctx context.Context) {
	acks, n := sub.held.takeAcks()
	if acks == nil {
		return
	}
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
		sub.held.restoreAcks(acks, n)
		sub.s.logger.Error("Ack failed; retrying with the next flush", err, watermill.LogFields{"topic": sub.topic})
	}
}

// keepalive resets the idle time of every entry this subscription holds (in
// flight, or handled with its ack still buffered), so no other consumer
// claims an entry that a slow handler is still working on.
// XCLAIM ... JUSTID does not increment the delivery counter.
func (sub *subscription) keepalive(ctx context.Context) {
	// Handled but not yet acked in Redis: they must not go idle either.
	byStream := sub.held.byStream()
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
