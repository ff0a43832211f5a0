// Package observe makes a router of the event bus observable: health
// (liveness and readiness), a stats snapshot, consumer lag read from Redis,
// Prometheus metrics and the HTTP handlers that serve them.
//
//	obs, err := observe.New(r, observe.Config{Registerer: reg}, logger) // before r.Run
//	obs.Mount(mux) // GET /healthz /readyz /stats /metrics
//
// # Order
//
// New must be called after router.New and before Router.Run: it adds
// Watermill's Prometheus middleware and decorators to the underlying
// Watermill router, and Watermill applies those only to handlers started
// after they were added. New refuses a router that already runs
// (ErrRouterRunning). Handlers may be added before or after New, and while the
// router runs.
//
// # What is read where
//
// Counters (received, acked, failed, retried, dead-lettered, filtered,
// in-flight, processing time) come from the router's middleware.Stats, in
// process. Published and failed publishes per topic are counted by a hook on
// the bus Publisher (bus.Publisher.OnPublish): every publish of the bus,
// however it is made (through the router's Publisher too). Lag,
// pending and the dead-letter count are read from Redis on every call (two
// pipelined round trips after a PING), bounded by Config.RedisTimeout; nothing
// is cached. The error rate is computed over a sliding window from per-second
// samples of the counters taken by one background goroutine, stopped by Close.
//
// # Concurrency
//
// Every method of Observer and every http.Handler it returns is safe for
// concurrent use, also while handlers are added to and removed from the
// router. Prometheus scrapes read the same snapshot as Stats, except the
// eventbus_handler_processing_seconds histogram, which is observed for each
// delivery (middleware.Stats.OnProcessed) so that it aggregates across
// replicas.
package observe
