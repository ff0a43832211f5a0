package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
)

const (
	// service is the bus ServiceName (the source attribute) of every scenario.
	service = "bench"
	// evType is the event type of the single-stream scenarios.
	evType = "bench.uploaded"
	// group is the consumer group of every subscriber under test.
	group = "bench"
	// pattern is the pattern subscription of the pattern scenarios; it
	// matches every name of typeNames.
	pattern = "bench.*"
	// maxLen is the retention every publisher under test trims to (MAXLEN ~).
	maxLen = bus.DefaultMaxLen
	// Batch is the number of events per call of the batch publish variants.
	Batch = 100
	// prefillChunk is how many XADDs one prefill pipeline sends.
	prefillChunk = 1000
	// waitLimit bounds every wait for a consumer, so a bug fails instead of hanging.
	waitLimit = 3 * time.Minute
	// routerClose is the CloseTimeout of the routers under test.
	routerClose = 10 * time.Second
)

// payload is the event data of every scenario: a photo-upload event of
// realistic size (about 130 bytes of JSON).
var payload = []byte(`{"photoId":"p-0123456789abcdef","userId":"u-4242","album":"holidays-2025","size":482133,"width":4032,"height":3024,"mime":"image/jpeg"}`)

// busFields returns the stream fields that the bus Publisher writes for one
// event of type typ published without extra attributes: the six CloudEvents
// attributes it sets and the data (TestFieldsMatchBus checks this).
func busFields(typ string) []any {
	id := watermill.NewUUID()
	return []any{
		bus.AttrID, id,
		bus.AttrCorrelationID, id, // the bus sets it on every event (a new correlation)
		bus.AttrType, typ,
		bus.AttrSource, service,
		bus.AttrSpecVersion, bus.SpecVersion,
		bus.AttrTime, time.Now().UTC().Format(time.RFC3339Nano),
		bus.AttrDataContentType, bus.DefaultContentType,
		bus.FieldData, payload,
	}
}

// attrMessage returns a Watermill message that carries, as metadata, the
// same attributes the bus writes, for watermill-redisstream's default
// marshaller (which stores metadata as one msgpack field).
func attrMessage(typ string) *message.Message {
	msg := message.NewMessage(watermill.NewUUID(), payload)
	msg.Metadata[bus.AttrType] = typ
	msg.Metadata[bus.AttrSource] = service
	msg.Metadata[bus.AttrSpecVersion] = bus.SpecVersion
	msg.Metadata[bus.AttrTime] = time.Now().UTC().Format(time.RFC3339Nano)
	msg.Metadata[bus.AttrDataContentType] = bus.DefaultContentType
	return msg
}

// busMessage returns the message a bus publisher is given for one event.
func busMessage() *message.Message { return message.NewMessage(watermill.NewUUID(), payload) }

// redisstreamValues returns what watermill-redisstream's default marshaller
// writes for attrMessage(typ).
func redisstreamValues(typ string) map[string]any {
	v, err := redisstream.DefaultMarshallerUnmarshaller{}.Marshal(typ, attrMessage(typ))
	if err != nil {
		panic(err) // attrMessage never sets the reserved key
	}
	return v
}

// openBus returns a bus with default settings under t's prefix, on a client
// of its own (named name, if not empty, for CLIENT LIST); both are closed by
// cl, the bus first.
func openBus(t *Target, cl *closers, name string) (*bus.Bus, error) {
	client := t.newClient(name)
	cl.add(client.Close)
	b, err := bus.New(bus.Config{ServiceName: service, Client: client, StreamPrefix: t.prefix}, watermill.NopLogger{})
	if err != nil {
		return nil, fmt.Errorf("bus.New: %w", err)
	}
	cl.add(b.Close)
	return b, nil
}

// prefill appends n entries, entry i to stream key(i), with pipelined XADDs
// and no trimming (so none is lost before it is consumed).
func prefill(ctx context.Context, client redis.UniversalClient, n int, key func(i int) string, values func(i int) any) error {
	for start := 0; start < n; start += prefillChunk {
		pipe := client.Pipeline()
		for i := start; i < min(n, start+prefillChunk); i++ {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: key(i), Values: values(i)})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("prefill: %w", err)
		}
	}
	return nil
}

// register records types in the bus type registry under prefix, as a
// publisher of the bus does on its first publish of each.
func register(ctx context.Context, client redis.UniversalClient, prefix string, types []string) error {
	key := bus.Config{StreamPrefix: prefix}.RegistryKey()
	for start := 0; start < len(types); start += prefillChunk {
		members := make([]any, 0, prefillChunk)
		for _, t := range types[start:min(len(types), start+prefillChunk)] {
			members = append(members, t)
		}
		if err := client.SAdd(ctx, key, members...).Err(); err != nil {
			return fmt.Errorf("register types: %w", err)
		}
	}
	return nil
}

// typeNames returns n event types bench.t0000, bench.t0001, …: all matched
// by pattern.
func typeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("bench.t%04d", i)
	}
	return out
}

// closers closes what a scenario opened, last opened first.
type closers []func() error

func (c *closers) add(f func() error) { *c = append(*c, f) }

// close runs every closer, last first, and returns the first error.
func (c *closers) close() error {
	var first error
	for i := len(*c) - 1; i >= 0; i-- {
		if err := (*c)[i](); err != nil && first == nil {
			first = err
		}
	}
	*c = nil
	return first
}

// ignoreErr wraps a close function whose error does not matter (a client
// already closed by its owner).
func ignoreErr(f func() error) func() error {
	return func() error { _ = f(); return nil }
}
