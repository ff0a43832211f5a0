package main_test

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestScheduledAndPublishDelay(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	ctx := t.Context()
	r := cli(t, "", with(global, "publish", "photo.retry", `{"photoId":"p-1"}`, "--delay", "1h", "--subject", "p-1")...).ok(t)
	id := strings.TrimSpace(r.stdout)
	r = cli(t, "", with(global, "publish", "photo.retry", `{"photoId":"p-2"}`, "--at", "2099-01-01T00:00:00Z")...)
	r.failsWith(t, 2, "beyond the scheduling horizon")
	cli(t, "", with(global, "publish", "photo.retry", `{}`, "--at", "tomorrow")...).failsWith(t, 2, "invalid --at")
	if n, _ := c.XLen(ctx, prefix+"photo.retry").Result(); n != 0 {
		t.Errorf("a delayed event was written to its stream at once (%d entries)", n)
	}

	r = cli(t, "", with(global, "scheduled", "list")...).ok(t)
	if !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "photo.retry") || !strings.Contains(r.stdout, "1 scheduled event") {
		t.Errorf("scheduled list:\n%s", r.stdout)
	}
	r = cli(t, "", with(global, "scheduled", "list", "--json")...).ok(t)
	var line struct {
		ID    string `json:"id"`
		Event struct {
			Subject string          `json:"subject"`
			Data    json.RawMessage `json:"data"`
		} `json:"event"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &line); err != nil || line.ID != id || line.Event.Subject != "p-1" || string(line.Event.Data) != `{"photoId":"p-1"}` {
		t.Errorf("scheduled list --json = %s (%v)", r.stdout, err)
	}
	cli(t, "", with(global, "scheduled", "cancel", id)...).ok(t)
	cli(t, "", with(global, "scheduled", "cancel", id)...).failsWith(t, 1, "is not scheduled")
	r = cli(t, "", with(global, "scheduled", "list")...).ok(t)
	if !strings.Contains(r.stdout, "no scheduled events") {
		t.Errorf("after cancel:\n%s", r.stdout)
	}
}
