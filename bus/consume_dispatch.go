package bus

// Dispatch: decoding entries into messages, delivering them in order, and
// awaiting each one's ack or nack.

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

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
