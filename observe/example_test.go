package observe_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/observe"
	"github.com/shared-infra/eventbus/router"
)

// Wiring a service: JSON logs through slog, one registry, the observer made
// right after the router (before handlers are added and before Run), and the
// four endpoints on the service's mux.
func Example() {
	logger := watermill.NewSlogLogger(slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	b, err := bus.New(bus.Config{ServiceName: "thumbnailer", RedisURL: os.Getenv("REDIS_URL")}, logger)
	if err != nil {
		panic(err)
	}
	defer b.Close()
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
	pub := r.Publisher() // every publish of the bus is counted per topic

	type uploaded struct {
		PhotoID string `json:"photoId"`
	}
	err = router.Handle(r, "resize", "photo.uploaded", func(ctx context.Context, ev bus.Event[uploaded]) error {
		// ... resize, then publish the follow-up with the handler's ctx:
		_, err := bus.Publish(ctx, pub, "photo.resized", ev.Data)
		return err
	})
	if err != nil {
		panic(err)
	}

	mux := http.NewServeMux()
	obs.Mount(mux) // GET /healthz /readyz /stats /metrics
	go func() { _ = http.ListenAndServe(":8080", mux) }()
	_ = r.Run(context.Background())
}
