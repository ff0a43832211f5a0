package router_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/rediskeys"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/router"
)

type Uploaded struct {
	PhotoID string `json:"photoId"`
	OwnerID string `json:"ownerId"`
}

type Completed struct {
	PhotoID string `json:"photoId"`
}

// The README's usage snippet, run: one publisher for everything, a schema
// in the registry, a follow-up that carries trace and causation.
func Example_readme() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prefix := fmt.Sprintf("example:readme:%d:", time.Now().UnixNano())

	done := make(chan *message.Message, 1)
	b, err := bus.New(bus.Config{ServiceName: "photo-worker", RedisURL: redistest.URL(), StreamPrefix: prefix, TracerProvider: tp}, nil) // doc: b, err := bus.New(bus.Config{ServiceName: "photo-worker", RedisURL: os.Getenv("REDIS_URL"), TracerProvider: tp}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	defer func() { _ = rediskeys.DeletePrefix(context.Background(), b.Client(), prefix) }() // doc: -

	_, err = b.Schemas().Put(ctx, "photo.uploaded", []byte(`{"type":"object","required":["photoId","ownerId"]}`))
	if err != nil {
		log.Fatal(err)
	}

	r, err := router.New(b, router.Config{}, nil)
	if err != nil {
		log.Fatal(err)
	}
	pub := b.Publisher()

	err = router.Handle(r, "thumbnailer", "photo.uploaded", func(ctx context.Context, ev bus.Event[Uploaded]) error {
		_, err := bus.Publish(ctx, pub, "photo.processing.completed", Completed{PhotoID: ev.Data.PhotoID},
			bus.WithUser(ev.Data.OwnerID))
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	go r.Run(ctx)
	<-r.Running() // doc: -

	id, err := bus.Publish(ctx, pub, "photo.uploaded", Uploaded{PhotoID: "p1", OwnerID: "u1"})
	if err != nil {
		log.Fatal(err)
	}
	_ = r.AddHandler("watch", "photo.processing.completed", func(ctx context.Context, msg *message.Message) error {
		done <- msg
		return nil
	})
	follow := <-done
	fmt.Println("causation is the upload:", follow.Metadata.Get(bus.AttrCausationID) == id)
	fmt.Println("dataschema of the upload:", b.Client().XRange(ctx, b.Config().StreamKey("photo.uploaded"), "-", "+").Val()[0].Values[bus.AttrDataSchema])
	_, err = bus.Publish(ctx, pub, "photo.uploaded", map[string]string{"ownerId": "u1"})
	fmt.Println(err != nil)
	_ = r.Close()
	spans := map[string]bool{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = true
	}
	fmt.Println(spans["publish photo.uploaded"], spans["process photo.uploaded"], spans["publish photo.processing.completed"])
	_, err = bus.Publish(ctx, pub, "photo.processing.completed", Completed{PhotoID: "p1"}, bus.WithUser(""))
	fmt.Println("empty user refused:", errors.Is(err, bus.ErrInvalidAttribute))
	// Output:
	// causation is the upload: true
	// dataschema of the upload: urn:eventbus:schema:photo.uploaded:1
	// true
	// true true true
	// empty user refused: true
}
