package main_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
)

// addDeadLetter writes a dead letter as the router would: the event as a
// subscriber delivered it, and why the handler gave up.
func addDeadLetter(t *testing.T, q *bus.DeadLetterQueue, typ, data, handler, reason string) string {
	t.Helper()
	msg := message.NewMessage(watermill.NewUUID(), []byte(data))
	for k, v := range map[string]string{
		bus.AttrID: msg.UUID, bus.AttrType: typ, bus.AttrSource: "test", bus.AttrSpecVersion: "1.0",
		bus.AttrDataContentType: "application/json", bus.AttrSubject: "p-1",
		bus.MetaTopic: typ, bus.MetaStreamID: "1-0", bus.MetaDelivery: "1",
	} {
		msg.Metadata.Set(k, v)
	}
	id, err := q.Add(t.Context(), msg, bus.DeadLetterInfo{Reason: reason, Handler: handler, Group: "svc." + handler, Attempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newBus(t *testing.T, c redis.UniversalClient, prefix string) *bus.Bus {
	t.Helper()
	b, err := bus.New(bus.Config{ServiceName: "svc", Client: c, StreamPrefix: prefix}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestDLQ(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	q := newBus(t, c, prefix).DeadLetters()
	ctx := t.Context()
	d1 := addDeadLetter(t, q, "photo.uploaded", `{"photoId":"p-1"}`, "thumbnail", "decode: image: unknown format")
	d2 := addDeadLetter(t, q, "photo.uploaded", `{"photoId":"p-2"}`, "indexer", "timeout after 30s")
	d3 := addDeadLetter(t, q, "photo.deleted", `{"photoId":"p-3"}`, "thumbnail", "boom")

	// list
	r := cli(t, "", with(global, "dlq", "list")...).ok(t)
	for _, want := range []string{"ID", "REASON", d1, d2, d3, "thumbnail", "indexer", "decode: image: unknown format", "3 dead letters"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dlq list lacks %q:\n%s", want, r.stdout)
		}
	}
	r = cli(t, "", with(global, "dlq", "list", "--json", "--handler", "thumbnail")...).ok(t)
	type dlqLine struct {
		ID, Type, Handler, Reason string
		Attempts                  int
		Event                     struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
	}
	var listed []dlqLine
	for _, l := range lines(r.stdout) {
		var one dlqLine
		if err := json.Unmarshal([]byte(l), &one); err != nil {
			t.Fatalf("dlq list --json line is not JSON (%v): %s", err, l)
		}
		listed = append(listed, one)
	}
	if len(listed) != 2 || listed[0].ID != d1 || listed[1].ID != d3 || listed[0].Attempts != 3 ||
		listed[0].Event.Type != "photo.uploaded" || string(listed[0].Event.Data) != `{"photoId":"p-1"}` {
		t.Errorf("dlq list --json --handler thumbnail = %+v, want %s and %s with their events", listed, d1, d3)
	}

	// show
	r = cli(t, "", with(global, "dlq", "show", d2)...).ok(t)
	for _, want := range []string{d2, "timeout after 30s", "indexer", "svc.indexer", "photo.uploaded", `"photoId": "p-2"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dlq show lacks %q:\n%s", want, r.stdout)
		}
	}
	cli(t, "", with(global, "dlq", "show", "1-1")...).failsWith(t, 1, "no dead letter 1-1", "dlq list")
	cli(t, "", with(global, "dlq", "show", "nope")...).failsWith(t, 2, "invalid dead-letter id")

	// redrive by id: back on its stream, for its handler's group only.
	r = cli(t, "", with(global, "dlq", "redrive", d1)...).ok(t)
	if !strings.Contains(r.stdout, "redrove 1 ") {
		t.Errorf("redrive output %q", r.stdout)
	}
	entries := c.XRange(ctx, prefix+"photo.uploaded", "-", "+").Val()
	if len(entries) != 1 || entries[0].Values["redrivegroup"] != "svc.thumbnail" || entries[0].Values["data"] != `{"photoId":"p-1"}` {
		t.Errorf("photo.uploaded stream after redrive: %v, want the event for svc.thumbnail", entries)
	}
	if n, _ := q.Len(ctx); n != 2 {
		t.Errorf("%d dead letters after redriving one, want 2", n)
	}

	// redrive --all and purge need --yes without a terminal, and change nothing.
	cli(t, "", with(global, "dlq", "redrive", "--all")...).failsWith(t, 2, "--yes")
	cli(t, "", with(global, "dlq", "purge")...).failsWith(t, 2, "--yes", "not a terminal")
	cli(t, "", with(global, "dlq", "redrive")...).failsWith(t, 2, "--all")
	cli(t, "", with(global, "dlq", "redrive", "--all", "--type", "photo.deleted")...).failsWith(t, 2, "--all")
	if n, _ := q.Len(ctx); n != 2 {
		t.Errorf("%d dead letters after refused commands, want 2", n)
	}

	// redrive by type
	cli(t, "", with(global, "dlq", "redrive", "--type", "photo.deleted")...).ok(t)
	if n := c.XLen(ctx, prefix+"photo.deleted").Val(); n != 1 {
		t.Errorf("photo.deleted has %d entries after redrive --type, want 1", n)
	}

	// purge --yes
	r = cli(t, "", with(global, "dlq", "purge", "--yes")...).ok(t)
	if !strings.Contains(r.stdout, "purged 1 ") {
		t.Errorf("purge output %q, want 1 purged", r.stdout)
	}
	if n, _ := q.Len(ctx); n != 0 {
		t.Errorf("%d dead letters after purge, want 0", n)
	}
	r = cli(t, "", with(global, "dlq", "list")...).ok(t)
	if !strings.Contains(r.stdout, "no dead letters") {
		t.Errorf("dlq list after purge: %q", r.stdout)
	}
}

func TestDLQRedriveAllYes(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	q := newBus(t, c, prefix).DeadLetters()
	addDeadLetter(t, q, "a.b", `{}`, "h1", "x")
	addDeadLetter(t, q, "a.c", `{}`, "h2", "y")
	r := cli(t, "", with(global, "dlq", "redrive", "--all", "--yes")...).ok(t)
	if !strings.Contains(r.stdout, "redrove 2 ") {
		t.Errorf("redrive --all --yes output %q, want 2 redriven", r.stdout)
	}
	if n, _ := q.Len(t.Context()); n != 0 {
		t.Errorf("%d dead letters left, want 0", n)
	}
}
