package outbox_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/pgtest"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/outbox"
)

// env is one test's database tables, bus and outbox.
type env struct {
	db     *sql.DB
	table  string
	photos string
	bus    *bus.Bus
	ob     *outbox.Outbox
}

func newEnv(t testing.TB, db *sql.DB, schemas map[string][]byte) *env {
	t.Helper()
	if db == nil {
		db = pgtest.DB(t)
	}
	e := &env{db: db, table: pgtest.Name(t, db, "outbox"), photos: pgtest.Name(t, db, "photos")}
	t.Cleanup(func() { _, _ = db.Exec(`DROP TABLE IF EXISTS "` + outbox.FailedTable(e.table) + `"`) })
	ctx := context.Background()
	require.NoError(t, outbox.InitializeSchema(ctx, db, e.table))
	_, err := db.ExecContext(ctx, `CREATE TABLE "`+e.photos+`" (id TEXT PRIMARY KEY, owner TEXT NOT NULL, event_id TEXT NOT NULL)`)
	require.NoError(t, err)
	b, err := bus.New(bus.Config{ServiceName: "outbox-test", Client: redistest.Client(t), StreamPrefix: redistest.Prefix(t)}, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	e.bus = b
	if schemas != nil {
		require.NoError(t, b.Schemas().Register(ctx, schemas))
	}
	e.ob, err = outbox.New(outbox.Config{Table: e.table, Bus: b.Publisher()}, nil)
	require.NoError(t, err)
	return e
}

// forward runs a Forwarder in this process until the test ends.
func (e *env) forward(t testing.TB, cfg outbox.ForwarderConfig) *outbox.Forwarder {
	t.Helper()
	cfg.Table = e.table
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 100 * time.Millisecond
	}
	f, err := outbox.NewForwarder(e.db, e.bus.Publisher(), cfg, nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- f.Run(context.Background()) }()
	t.Cleanup(func() {
		require.NoError(t, f.Close())
		require.NoError(t, <-done)
	})
	select {
	case <-f.Running():
	case err := <-done:
		t.Fatalf("forwarder stopped at start: %v", err)
	}
	return f
}

// entries waits (at most 20 s) until the stream of typ holds at least n
// entries and nothing is pending in the outbox, and returns them.
func (e *env) entries(t testing.TB, typ string, n int) []redis.XMessage {
	t.Helper()
	ctx := context.Background()
	key := e.bus.Config().StreamKey(typ)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := e.bus.Client().XRange(ctx, key, "-", "+").Result()
		require.NoError(t, err)
		rows, _, err := outbox.Pending(ctx, e.db, e.table)
		require.NoError(t, err)
		if len(got) >= n && rows == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s has %d entries (want %d), outbox %d rows, after 20 s", key, len(got), n, rows)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
