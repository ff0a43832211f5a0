package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/pgtest"
	"github.com/shared-infra/eventbus/internal/rediskeys"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/outbox"
)

type OrderPlaced struct {
	OrderID string `json:"orderId"`
}

// Write a row and its event in one transaction; a Forwarder in the same
// process moves the event to the bus once the transaction commits.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", pgtest.URL()) // github.com/jackc/pgx/v5/stdlib
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	opt, _ := redis.ParseURL(redistest.URL())
	client := redis.NewClient(opt)
	defer client.Close()
	prefix := fmt.Sprintf("example:outbox:%d:", time.Now().UnixNano())
	defer func() { _ = rediskeys.DeletePrefix(context.Background(), client, prefix) }()
	table := fmt.Sprintf("example_outbox_%d", time.Now().UnixNano())
	defer func() {
		_, _ = db.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + outbox.FailedTable(table) + `", "` + table + `_orders"`)
	}()

	b, err := bus.New(bus.Config{ServiceName: "orders-api", Client: client, StreamPrefix: prefix}, watermill.NopLogger{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()

	// Once, at start-up: the outbox table (and the application's own).
	if err := outbox.InitializeSchema(ctx, db, table); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE "`+table+`_orders" (id TEXT PRIMARY KEY)`); err != nil {
		fmt.Println(err)
		return
	}
	ob, err := outbox.New(outbox.Config{Table: table, Bus: b.Publisher()}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}

	// The forwarder: here in the API process; it can run alone as well.
	fw, err := outbox.NewForwarder(db, b.Publisher(), outbox.ForwarderConfig{Table: table}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	go func() { _ = fw.Run(ctx) }()
	defer fw.Close()

	sub, _ := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "example"})
	events, err := sub.Subscribe(ctx, "order.placed")
	if err != nil {
		fmt.Println(err)
		return
	}

	// The request: the order row and its event, in one transaction.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, `INSERT INTO "`+table+`_orders" (id) VALUES ('o-1')`); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := bus.Publish(ctx, ob.Publisher(tx), "order.placed", OrderPlaced{OrderID: "o-1"},
		bus.WithID("order-o-1-placed"), bus.WithSubject("o-1")); err != nil {
		fmt.Println(err) // the event was refused: roll back (Commit would fail)
		return
	}
	if err := tx.Commit(); err != nil {
		fmt.Println(err)
		return
	}

	msg := <-events
	msg.Ack()
	ev, _ := bus.Decode[OrderPlaced](msg)
	fmt.Println(ev.ID, ev.Type, ev.Source, ev.Subject, ev.Data.OrderID)
	// Output: order-o-1-placed order.placed orders-api o-1 o-1
}
