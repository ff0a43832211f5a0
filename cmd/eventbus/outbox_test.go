package main_test

import (
	"context"
	"testing"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/pgtest"
	"github.com/shared-infra/eventbus/outbox"
)

func TestOutboxForwardUntilEmpty(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	db := pgtest.DB(t)
	table := pgtest.Name(t, db, "cli_outbox")
	t.Cleanup(func() { _, _ = db.Exec(`DROP TABLE IF EXISTS "` + outbox.FailedTable(table) + `"`) })
	ctx := context.Background()
	if err := outbox.InitializeSchema(ctx, db, table); err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(bus.Config{ServiceName: "api", Client: c, StreamPrefix: prefix}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ob, err := outbox.New(outbox.Config{Table: table, Bus: b.Publisher()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"e1", "e2", "e3"} {
		if _, err := bus.Publish(ctx, ob.Publisher(tx), "order.placed", id, bus.WithID(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	r := cli(t, "", with(global, "outbox", "forward", "--postgres-url", pgtest.URL(), "--table", table, "--until-empty", "--poll", "20ms")...).ok(t)
	if r.stdout != "outbox "+table+" empty\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	got, err := c.XRange(ctx, prefix+"order.placed", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Values["id"] != "e1" || got[2].Values["id"] != "e3" || got[0].Values["source"] != "api" {
		t.Fatalf("stream entries %v, want e1, e2, e3 from source api", got)
	}
}

func TestOutboxForwardBadInput(t *testing.T) {
	t.Parallel()
	_, _, global := setup(t)
	cli(t, "", with(global, "outbox", "forward", "--postgres-url", "postgres://postgres@127.0.0.1:1/x", "--until-empty")...).
		failsWith(t, 1, "PostgreSQL at postgres://postgres@127.0.0.1:1/x does not answer")
	cli(t, "", with(global, "outbox", "forward", "--postgres-url", pgtest.URL(), "--table", "Bad-Table")...).
		failsWith(t, 2, `table "Bad-Table" must match`)
	cli(t, "", with(global, "outbox", "forward", "--postgres-url", pgtest.URL(), "--batch", "0")...).
		failsWith(t, 2, "BatchSize 0 must be between 1 and 10000")
}
