package gateway

import (
	"testing"

	"github.com/shared-infra/eventbus/internal/cejson/cejsontest"
)

// A push-stream entry's SSE data is the event in CloudEvents JSON, the same
// bytes as `eventbus tail --json` writes for it (cmd/eventbus TestEntryJSON).
func TestPushEntryJSON(t *testing.T) {
	for _, c := range cejsontest.Entries(t) {
		ev, err := decodePushEntry(c.XMessage())
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if string(ev.data) != c.JSON {
			t.Errorf("%s: SSE data\n got %s\nwant %s", c.Name, ev.data, c.JSON)
		}
	}
}
