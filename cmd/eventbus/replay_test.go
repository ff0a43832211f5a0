package main_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/shared-infra/eventbus/bus"
)

func TestReplay(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	b := newBus(t, c, prefix)
	ctx := t.Context()
	for i := range 3 {
		if _, err := bus.Publish(ctx, b.Publisher(), "photo.uploaded", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	key := prefix + "photo.uploaded"
	if err := c.XGroupCreate(ctx, key, "svc.thumb", "$").Err(); err != nil {
		t.Fatal(err)
	}
	last := func() string {
		gs, err := c.XInfoGroups(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return gs[0].LastDeliveredID
	}
	before := last()

	r := cli(t, "", with(global, "replay", "svc.thumb", "--from", "1h", "--dry-run")...).ok(t)
	if !strings.Contains(r.stdout, "would deliver 3 events again to svc.thumb") || !strings.Contains(r.stdout, "photo.uploaded") {
		t.Errorf("dry run output:\n%s", r.stdout)
	}
	if last() != before {
		t.Errorf("dry run moved the group")
	}
	cli(t, "", with(global, "replay", "svc.thumb", "--from", "1h")...).failsWith(t, 2, "--yes")
	cli(t, "", with(global, "replay", "svc.nope", "--from", "1h", "--yes")...).failsWith(t, 1, "consumer group not found")
	cli(t, "", with(global, "replay", "svc.thumb", "--from", "yesterday", "--yes")...).failsWith(t, 2, "invalid --from")

	r = cli(t, "", with(global, "replay", "svc.thumb", "--from", "0", "--yes")...).ok(t)
	if !strings.Contains(r.stdout, "3 events will be delivered again") {
		t.Errorf("replay output:\n%s", r.stdout)
	}
	if got := last(); got != "0-0" {
		t.Errorf("group at %s after replay --from 0, want 0-0", got)
	}

	r = cli(t, "", with(global, "replay", "audit", "--into-temp", "--type", "photo.uploaded", "--from", "1h")...).ok(t)
	ls := lines(r.stdout)
	if len(ls) != 3 {
		t.Fatalf("--into-temp printed %d lines, want 3:\n%s", len(ls), r.stdout)
	}
	var ev struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(ls[2]), &ev); err != nil || ev.Type != "photo.uploaded" || string(ev.Data) != `{"i":2}` {
		t.Errorf("last line %s (%v)", ls[2], err)
	}
	gs, _ := c.XInfoGroups(ctx, key).Result()
	if len(gs) != 1 {
		t.Errorf("groups after --into-temp: %+v, want the live one only", gs)
	}
}
