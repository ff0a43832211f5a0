package observe

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/shared-infra/eventbus/bus"
)

// TopicStats counts what was published to one topic (event type) by the
// router's bus: every call of its Publisher, also through decorators such as
// the router's Publisher. A publish refused before it reaches the bus (the
// router's schema validation) is not counted here.
type TopicStats struct {
	// Published counts events written.
	Published uint64 `json:"published"`
	// Failed counts events whose Publish call returned an error (invalid,
	// too large, Redis unreachable...). A call with several events counts
	// each of them.
	Failed uint64 `json:"failed"`
}

type topicCounters struct{ published, failed atomic.Uint64 }

// publishCounters holds a topicCounters per topic.
type publishCounters struct{ m sync.Map } // topic -> *topicCounters

func (p *publishCounters) get(topic string) *topicCounters {
	if c, ok := p.m.Load(topic); ok {
		return c.(*topicCounters)
	}
	c, _ := p.m.LoadOrStore(topic, &topicCounters{})
	return c.(*topicCounters)
}

// InvalidTopic is the topic under which publishes to a topic that is not a
// valid event type are counted, so that bad input cannot make one series per
// typo. It cannot collide with an event type ('$' is not allowed in types).
const InvalidTopic = "$invalid"

// record counts the outcome of one Publish call of n events.
func (p *publishCounters) record(topic string, n int, err error) {
	if n == 0 {
		return
	}
	if bus.ValidateType(topic) != nil {
		topic = InvalidTopic
	}
	c := p.get(topic)
	if err != nil {
		c.failed.Add(uint64(n))
	} else {
		c.published.Add(uint64(n))
	}
}

func (p *publishCounters) snapshot() map[string]TopicStats {
	out := map[string]TopicStats{}
	p.m.Range(func(k, v any) bool {
		c := v.(*topicCounters)
		out[k.(string)] = TopicStats{Published: c.published.Load(), Failed: c.failed.Load()}
		return true
	})
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Publisher returns pub unchanged. Every publish of the router's bus is
// counted per topic (Snapshot.Topics, eventbus_published_total and
// eventbus_publish_failed_total) by a hook New puts on the bus Publisher
// (bus.Publisher.OnPublish), however it is made; this method stays so that
// code written when only publishes through it were counted keeps working.
func (o *Observer) Publisher(pub message.Publisher) message.Publisher { return pub }
