package observe_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/rediskeys"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/observe"
	"github.com/shared-infra/eventbus/router"
)

type Uploaded struct {
	PhotoID string `json:"photoId"`
}

type Resized struct {
	PhotoID string `json:"photoId"`
}

// Wiring a service (docs/observability.md, Setup): JSON logs through slog,
// one registry, the observer made right after the router (before handlers
// are added and before Run), and the four endpoints on the service's mux.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tp := sdktrace.NewTracerProvider()
	prefix := fmt.Sprintf("example:observe:%d:", time.Now().UnixNano())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}

	logger := watermill.NewSlogLogger(slog.New(slog.NewJSONHandler(os.Stderr, nil)))

	b, err := bus.New(bus.Config{ServiceName: "thumbnailer", RedisURL: redistest.URL(), StreamPrefix: prefix, TracerProvider: tp}, logger) // doc: b, err := bus.New(bus.Config{ServiceName: "thumbnailer", RedisURL: os.Getenv("REDIS_URL"), TracerProvider: tp}, logger)
	if err != nil {
		panic(err)
	}
	defer b.Close()
	defer func() { _ = rediskeys.DeletePrefix(context.Background(), b.Client(), prefix) }()
	r, err := router.New(b, router.Config{}, logger)
	if err != nil {
		panic(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	obs, err := observe.New(r, observe.Config{Registerer: reg}, logger)
	if err != nil {
		panic(err)
	}
	defer obs.Close()
	pub := b.Publisher()

	err = router.Handle(r, "resize", "photo.uploaded", func(ctx context.Context, ev bus.Event[Uploaded]) error {
		_, err := bus.Publish(ctx, pub, "photo.resized", Resized{PhotoID: ev.Data.PhotoID})
		return err
	})
	if err != nil {
		panic(err)
	}
	resized := make(chan string, 1)
	err = router.Handle(r, "notify", "photo.resized", func(ctx context.Context, ev bus.Event[Resized]) error {
		resized <- ev.Data.PhotoID
		return nil
	})
	if err != nil {
		panic(err)
	}

	mux := http.NewServeMux()
	obs.Mount(mux)                          // GET /healthz /readyz /stats /metrics
	go func() { _ = http.Serve(ln, mux) }() // doc: go http.ListenAndServe(":8080", mux)
	go func() {
		defer cancel() // ends r.Run below
		<-r.Running()
		if _, err := bus.Publish(ctx, pub, "photo.uploaded", Uploaded{PhotoID: "p1"}); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println("resized", <-resized)
		res, err := http.Get("http://" + ln.Addr().String() + "/healthz")
		if err != nil {
			fmt.Println(err)
			return
		}
		_ = res.Body.Close()
		fmt.Println("healthz", res.StatusCode)
	}()
	err = r.Run(ctx)
	fmt.Println("run:", err)
	// Output:
	// resized p1
	// healthz 200
	// run: <nil>
}

// Traces with the OpenTelemetry SDK (docs/observability.md, Traces): any
// exporter; here an in-memory one, so the spans can be printed.
func Example_tracing() {
	ctx := context.Background()
	exporter := tracetest.NewInMemoryExporter()
	res := resource.NewSchemaless(attribute.String("service.name", "thumbnailer"))
	url := redistest.URL()
	logger := watermill.NopLogger{}
	prefix := fmt.Sprintf("example:tracing:%d:", time.Now().UnixNano())

	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	defer tp.Shutdown(ctx)
	b, err := bus.New(bus.Config{ServiceName: "thumbnailer", RedisURL: url, StreamPrefix: prefix, TracerProvider: tp}, logger) // doc: b, err := bus.New(bus.Config{ServiceName: "thumbnailer", RedisURL: url, TracerProvider: tp}, logger)
	if err != nil {
		panic(err)
	}
	defer b.Close()
	defer func() { _ = rediskeys.DeletePrefix(context.Background(), b.Client(), prefix) }()

	if _, err := bus.Publish(ctx, b.Publisher(), "photo.uploaded", Uploaded{PhotoID: "p1"}); err != nil {
		panic(err)
	}
	_ = tp.ForceFlush(ctx)
	for _, s := range exporter.GetSpans() {
		fmt.Println(s.Name, s.Resource.Set().Len() > 0)
	}
	// Output:
	// publish photo.uploaded true
}
