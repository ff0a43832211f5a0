package bus

import (
	"sync"
	"sync/atomic"
)

// InvalidTopic is the topic under which Publisher.Counts counts publishes to
// a topic that is not a valid event type, so that bad input cannot make one
// entry per typo. It cannot collide with an event type ('$' is not allowed
// in types).
const InvalidTopic = "$invalid"

// PublishCounts counts what a Publisher was asked to publish to one topic
// since the Bus was made.
type PublishCounts struct {
	// Published counts events whose Publish call succeeded: written (or
	// scheduled, for delayed ones), or found already written (Duplicates).
	Published uint64 `json:"published"`
	// Duplicates counts, of Published, the events not written again because
	// their id had been written to the stream within Config.DedupWindow (a
	// publish retried with the same id, or go-redis retrying an XADD whose
	// reply was lost); see IsDuplicate.
	Duplicates uint64 `json:"duplicates"`
	// Failed counts events whose Publish call returned an error (invalid,
	// rejected by the type's schema, too large, Redis unreachable...). A call
	// with several events counts each of them.
	Failed uint64 `json:"failed"`
}

type topicCounters struct{ published, failed, duplicates atomic.Uint64 }

// publishCounts holds a topicCounters per topic.
type publishCounts struct{ m sync.Map } // topic -> *topicCounters

func (p *publishCounts) get(topic string) *topicCounters {
	if c, ok := p.m.Load(topic); ok {
		return c.(*topicCounters)
	}
	c, _ := p.m.LoadOrStore(topic, &topicCounters{})
	return c.(*topicCounters)
}

// record counts the outcome of one Publish call of n events.
func (p *publishCounts) record(topic string, n int, err error) {
	if n == 0 {
		return
	}
	if ValidateType(topic) != nil {
		topic = InvalidTopic
	}
	c := p.get(topic)
	if err != nil {
		c.failed.Add(uint64(n))
	} else {
		c.published.Add(uint64(n))
	}
}

// duplicate counts one event of topic dropped as a duplicate.
func (p *publishCounts) duplicate(topic string) {
	if ValidateType(topic) != nil {
		topic = InvalidTopic
	}
	p.get(topic).duplicates.Add(1)
}

// Counts returns, per topic, how many events Publish calls carried and how
// many of them failed, since the Bus was made. Every way into the bus counts
// here (the router's Publisher, the gateway, the CLI: they are this
// publisher); package observe reports it. Safe for concurrent use.
func (p *Publisher) Counts() map[string]PublishCounts {
	out := map[string]PublishCounts{}
	p.counts.m.Range(func(k, v any) bool {
		c := v.(*topicCounters)
		out[k.(string)] = PublishCounts{Published: c.published.Load(), Failed: c.failed.Load(), Duplicates: c.duplicates.Load()}
		return true
	})
	return out
}
