package bus_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// Store a schema, publish against it, and see a new version that retained
// events would fail refused (docs/schemas.md).
func ExampleSchemaRegistry_Put() {
	opt, _ := redis.ParseURL(redistest.URL())
	client := redis.NewClient(opt)
	defer client.Close()
	prefix := fmt.Sprintf("example:%d:", time.Now().UnixNano())
	defer cleanup(client, prefix)
	b, err := bus.New(bus.Config{ServiceName: "shop", Client: client, StreamPrefix: prefix}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	ctx := context.Background()

	s, err := b.Schemas().Put(ctx, "order.placed", []byte(`{"type":"object","required":["orderId"]}`))
	fmt.Println(s.Version, s.URI, err)

	_, err = bus.Publish(ctx, b.Publisher(), "order.placed", map[string]any{"orderId": "A-1"})
	fmt.Println(err)
	_, err = bus.Publish(ctx, b.Publisher(), "order.placed", map[string]any{"total": 3})
	fmt.Println(errors.Is(err, bus.ErrSchemaViolation))

	// A.1 has no total: a schema that requires one is refused, naming the entry.
	_, err = b.Schemas().Put(ctx, "order.placed", []byte(`{"type":"object","required":["orderId","total"]}`))
	var ie *bus.IncompatibleSchemaError
	fmt.Println(errors.As(err, &ie), len(ie.IDs), ie.Checked)
	// Output:
	// 1 urn:eventbus:schema:order.placed:1 <nil>
	// <nil>
	// true
	// true 1 1
}
