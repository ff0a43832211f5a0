package bus

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// DefaultDedupWindow is how long a publisher remembers the event ids it
// wrote to a stream when Config.DedupWindow is zero.
const DefaultDedupWindow = 2 * time.Minute

// MetaDuplicate is set by Publish on a message that was not written because
// its event id had been written to the stream within Config.DedupWindow: its
// value is the stream entry id of that earlier write. Publish clears it on a
// message it writes. Like every "_eventbus_" key it is never written to a
// stream. Read it with IsDuplicate.
const MetaDuplicate = internalPrefix + "duplicate"

// IsDuplicate reports whether the last Publish of msg found its event id
// already written to the stream within the deduplication window (and so
// wrote nothing), and the entry id of the earlier write.
func IsDuplicate(msg *message.Message) (entryID string, ok bool) {
	entryID = msg.Metadata.Get(MetaDuplicate)
	return entryID, entryID != ""
}

// DedupKey is the key that records that the event with id was written to
// the stream stream (a stream key: StreamKey(t), or PushKey). It holds the
// entry id and expires after Config.DedupWindow. Its hash tag is the stream
// key, so that one script on one cluster slot checks it and writes the
// entry; it starts with the prefix and a '$' (not allowed in event types),
// so it cannot collide with a stream key.
func (c Config) DedupKey(stream, id string) string {
	return c.StreamPrefix + "$dedup:{" + stream + "}:" + id
}

//go:embed lua/dedup_xadd.lua
var dedupXAddLua string

var dedupXAddScript = redis.NewScript(dedupXAddLua)

// dedupStats counts what the deduplication dropped (Publisher.Duplicates).
type dedupStats struct {
	duplicates atomic.Int64
}

// Duplicates returns how many events this publisher did not write because
// their id had been written to the stream within Config.DedupWindow (a
// retried publish, or go-redis retrying a write whose reply was lost). Push
// copies are not counted: they follow their event. Counts has them per
// topic (PublishCounts.Duplicates).
func (p *Publisher) Duplicates() int64 { return p.dedupStats.duplicates.Load() }

func (p *Publisher) dedupOn() bool { return p.cfg.DedupWindow > 0 }

// entryWrite is one entry the publisher writes: an event on its stream, or
// its copy on the push stream.
type entryWrite struct {
	msg   *message.Message
	key   string // the stream
	topic string // the event type (counted in Publisher.Counts)
	push  bool   // the push copy
	keys  []string
	args  []any
	cmd   redis.Cmder // the XADD, or the script's EVALSHA/EVAL
}

// newWrite prepares the write of fields (an event's stream fields) to the
// stream key. With deduplication on it is the script (lua/dedup_xadd.lua)
// with the XADD arguments go-redis builds from xaddArgs, so whatever trim
// options xaddArgs sets are kept.
func (p *Publisher) newWrite(ctx context.Context, key, topic string, msg *message.Message, fields []any, push bool) *entryWrite {
	w := &entryWrite{msg: msg, key: key, topic: topic, push: push}
	if !p.dedupOn() {
		return w
	}
	name := msg.UUID
	if push {
		// One push stream holds every type: an id is unique per type.
		name = topic + ":" + msg.UUID
	}
	// A pipeline that is never run builds the command: nothing is sent.
	x := p.client.Pipeline().XAdd(ctx, p.xaddArgs(key, fields)).Args()
	w.keys = []string{key, p.cfg.DedupKey(key, name)}
	w.args = make([]any, 0, len(x)-1)
	w.args = append(w.args, p.cfg.DedupWindow.Milliseconds())
	w.args = append(w.args, x[2:]...) // after "xadd" and the key
	return w
}

// queue adds w to pipe.
func (p *Publisher) queue(ctx context.Context, pipe redis.Pipeliner, w *entryWrite, fields []any) {
	if !p.dedupOn() {
		w.cmd = pipe.XAdd(ctx, p.xaddArgs(w.key, fields))
		return
	}
	w.cmd = dedupXAddScript.EvalSha(ctx, pipe, w.keys, w.args...)
}

// writeOne writes one event's entry on its own (the publisher's fast path).
func (p *Publisher) writeOne(ctx context.Context, key, topic string, msg *message.Message, fields []any) error {
	w := p.newWrite(ctx, key, topic, msg, fields, false)
	if !p.dedupOn() {
		w.cmd = p.client.XAdd(ctx, p.xaddArgs(key, fields))
	} else {
		w.cmd = dedupXAddScript.Run(ctx, p.client, w.keys, w.args...) // EVALSHA, EVAL on NOSCRIPT
	}
	if err := w.cmd.Err(); err != nil {
		return fmt.Errorf("publish %s to %s: %w", msg.UUID, key, err)
	}
	p.settle(w)
	return nil
}

// execWrites runs pipe (see exec) and records the outcome of each write. A
// script unknown to the server (NOSCRIPT: after a restart, a failover, or
// SCRIPT FLUSH) did not run: those writes are sent again with EVAL, which
// loads it.
func (p *Publisher) execWrites(ctx context.Context, pipe redis.Pipeliner, ws []*entryWrite) error {
	cmds := append([]redis.Cmder(nil), pipe.Cmds()...) // Exec empties the pipeline
	err := p.exec(ctx, pipe)
	if err != nil && p.dedupOn() {
		var retry []*entryWrite
		for _, w := range ws {
			if isNoScript(w.cmd.Err()) {
				retry = append(retry, w)
			}
		}
		if len(retry) > 0 {
			var other error
			for _, c := range cmds {
				if e := c.Err(); e != nil && !isNoScript(e) {
					other = e
					break
				}
			}
			again := p.client.Pipeline()
			for _, w := range retry {
				w.cmd = dedupXAddScript.Eval(ctx, again, w.keys, w.args...)
			}
			rerr := p.exec(ctx, again)
			switch {
			case other != nil:
				err = errors.Join(other, rerr)
			case errors.Is(err, ErrNotReplicated):
				err = errors.Join(err, rerr)
			default:
				err = rerr
			}
		}
	}
	if err != nil {
		return err
	}
	for _, w := range ws {
		p.settle(w)
	}
	return nil
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

// settle records the outcome of a write that succeeded on its message.
func (p *Publisher) settle(w *entryWrite) {
	c, ok := w.cmd.(*redis.Cmd)
	if !ok || w.push {
		if !w.push {
			delete(w.msg.Metadata, MetaDuplicate)
		}
		return
	}
	res, _ := c.Slice()
	if len(res) != 2 {
		return
	}
	written, _ := res[0].(int64)
	entry, _ := res[1].(string)
	if written == 1 {
		delete(w.msg.Metadata, MetaDuplicate)
		return
	}
	w.msg.Metadata[MetaDuplicate] = entry
	p.dedupStats.duplicates.Add(1)
	p.counts.duplicate(w.topic)
	p.logger.Debug("Duplicate event not written", watermill.LogFields{
		"event_id": w.msg.UUID, "topic": w.topic, "stream": w.key, "earlier_entry": entry,
		"window": strconv.FormatInt(p.cfg.DedupWindow.Milliseconds(), 10) + "ms",
	})
}

// DedupScript returns the source of the Lua script that writes deduplicated
// entries, for tools that preload it (SCRIPT LOAD) or inspect it.
func DedupScript() string { return dedupXAddLua }
