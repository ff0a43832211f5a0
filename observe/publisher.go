package observe

import (
	"sort"

	"github.com/shared-infra/eventbus/bus"
)

// TopicStats counts what was published to one topic (event type) by the
// router's bus: every Publish call of the bus Publisher, the one path every
// way into the bus takes (the router, the gateway, the CLI). An event its
// type's schema rejects is counted as Failed. Counts run from the Bus's
// creation (bus.Publisher.Counts).
type TopicStats = bus.PublishCounts

// InvalidTopic is the topic under which publishes to a topic that is not a
// valid event type are counted, so that bad input cannot make one series per
// typo. It cannot collide with an event type ('$' is not allowed in types).
const InvalidTopic = bus.InvalidTopic

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
