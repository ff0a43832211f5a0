package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shared-infra/eventbus/bus"
)

// Endpoints served by [Gateway.Handler].
const (
	// EventsPath is the ingress endpoint: POST one CloudEvent (structured or
	// binary mode) or a batch.
	EventsPath = "/v1/events"
	// StreamPath is the server-sent events endpoint browsers connect to.
	StreamPath = "/v1/stream"
)

// Defaults for [Config]. A zero field takes its default.
const (
	DefaultListenAddr        = ":8080"
	DefaultMaxBodyBytes      = 4 << 20 // 4 MiB
	DefaultMaxBatchEvents    = 1000
	DefaultRatePerSecond     = 50.0
	DefaultRateBurst         = 100
	DefaultPublishTimeout    = 5 * time.Second
	DefaultHeartbeatInterval = 15 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultReadBlock         = time.Second
	DefaultReplayPage        = 500
	// DefaultClientBuffer is how many events may wait for one browser
	// before it is disconnected: a full XREAD batch of the push-stream
	// reader; at 1,000 events/s of which a third reach every browser it is
	// about 0.7 s of backlog.
	DefaultClientBuffer  = 256
	DefaultRetry         = 2 * time.Second
	DefaultShutdownRetry = 10 * time.Second
	// DefaultCloseTimeout bounds how long Close waits for the push-stream
	// reader to stop.
	DefaultCloseTimeout = 10 * time.Second
)

// Config configures a [Gateway]. Pass it by value to [New]; zero fields take
// the defaults above.
type Config struct {
	// ListenAddr is the address [Gateway.ListenAndServe] listens on.
	// Default DefaultListenAddr (":8080"). Handler ignores it.
	ListenAddr string

	// Auth verifies the JWTs of browsers on the stream endpoint (Bearer
	// header, or the access_token query parameter that EventSource needs).
	// Required: at least one of HMACSecret, RSAPublicKey and JWKS.URL. With
	// a JWKS, New fetches the key set once (see JWKSConfig) and Close stops
	// its refreshes.
	Auth AuthConfig

	// Ingress says which credentials may POST events: API keys, and/or JWTs
	// that grant publishing. Required (see IngressConfig.Validate), unless
	// IngressJWT is set.
	Ingress IngressConfig
	// IngressJWT, when true and Ingress.JWT is nil, makes ingress accept the
	// JWTs that Auth verifies, provided they grant publishing ("publish":
	// true, or the "publish" scope).
	IngressJWT bool

	// MaxBodyBytes is the largest ingress request body accepted; a larger one
	// is answered 413 and nothing is published. Default DefaultMaxBodyBytes
	// (4 MiB). Each event is also bounded by the bus's MaxEventSize.
	MaxBodyBytes int64
	// MaxBatchEvents is the most events one batch may hold (413 beyond).
	// Default DefaultMaxBatchEvents.
	MaxBatchEvents int

	// RateLimit bounds ingress requests per principal (API key or JWT
	// subject). A batch is one request.
	RateLimit RateLimit

	// PublishTimeout bounds one ingress publish to Redis (when it expires
	// the answer is 503), and the Redis read with which a stream starts.
	// Default DefaultPublishTimeout.
	PublishTimeout time.Duration

	// HeartbeatInterval is how often an idle stream gets a ": ping" comment
	// (which keeps proxies from closing it) and, when the browser has
	// everything up to the push stream's current position, an "id:" line
	// that moves its Last-Event-ID forward. Default DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// WriteTimeout bounds each write to a stream: a browser that accepts no
	// bytes for this long is disconnected. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// ClientBuffer is how many events may wait for one browser's writer. A
	// browser that falls further behind is disconnected (it reconnects and
	// resumes from its Last-Event-ID); it never slows the others. The queue
	// holds pointers to events rendered once and shared by every browser,
	// and grows only while a browser is behind, so a large value costs
	// memory only for browsers that use it (8 bytes per waiting event, plus
	// the events themselves). It also caps the COUNT of the push-stream
	// reader's XREAD (256), so that one read never overflows a browser that
	// is up to date. Default DefaultClientBuffer (256).
	ClientBuffer int

	// AllowedOrigins are the origins browsers may call the gateway from
	// (CORS), e.g. "https://app.example.com"; "*" allows any. Empty means
	// same-origin only.
	AllowedOrigins []string

	// ReadBlock is how long one XREAD of the push stream blocks; it also
	// bounds how long Close waits for the reader. Default DefaultReadBlock.
	ReadBlock time.Duration
	// ReplayPage is the COUNT of one XRANGE when a stream resumes. Default
	// DefaultReplayPage.
	ReplayPage int
	// CloseTimeout bounds how long Close waits for the push-stream reader.
	// Default DefaultCloseTimeout.
	CloseTimeout time.Duration

	// Retry is the reconnection delay every stream tells its browser first
	// ("retry:"), with jitter: a value drawn uniformly from [Retry, 2*Retry),
	// so that browsers cut at once (a proxy restart) do not come back at
	// once. Default DefaultRetry (2s).
	Retry time.Duration
	// Registerer, if set, receives the gateway's Prometheus metrics
	// (eventbus_gateway_*: streams open and closed by reason, deliveries,
	// ingress requests by status, rate-limited requests, the push-stream
	// reader's position, last read and lag, resumes and gaps; see
	// docs/observability.md). Nil means no metrics.
	Registerer prometheus.Registerer
	// StuckAfter is how long the push-stream reader may go without
	// completing a read before [Gateway.Ready] reports it stuck. Default
	// DefaultStuckAfter (10s); it must exceed ReadBlock.
	StuckAfter time.Duration

	// ShutdownRetry spreads the reconnections when the gateway shuts down:
	// before its closing message every stream gets a "retry:" drawn from
	// [Retry, Retry+ShutdownRetry), so the other replicas see the browsers
	// of this one return over that window instead of all at the browser's
	// default delay. Default DefaultShutdownRetry (10s).
	ShutdownRetry time.Duration
}

// RateLimit is a token bucket per principal.
type RateLimit struct {
	// PerSecond is the sustained request rate allowed per principal. Default
	// DefaultRatePerSecond; -1 disables rate limiting.
	PerSecond float64
	// Burst is how many requests may come at once. Default DefaultRateBurst.
	Burst int
	// PerProcess, when true, keeps the buckets in this process only, so N
	// gateway replicas allow N times the rate. By default (false) the
	// buckets live in the bus's Redis (github.com/go-redis/redis_rate, one
	// key per principal, "rate:<StreamPrefix>$ingress:<principal>", which
	// expires once full again) and every replica on that Redis shares them;
	// while Redis cannot be asked, each process falls back to its own.
	PerProcess bool
}

func (c *Config) setDefaults() {
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultListenAddr
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxBatchEvents == 0 {
		c.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if c.RateLimit.PerSecond == 0 {
		c.RateLimit.PerSecond = DefaultRatePerSecond
	}
	if c.RateLimit.Burst == 0 {
		c.RateLimit.Burst = DefaultRateBurst
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.ClientBuffer == 0 {
		c.ClientBuffer = DefaultClientBuffer
	}
	if c.ReadBlock == 0 {
		c.ReadBlock = DefaultReadBlock
	}
	if c.ReplayPage == 0 {
		c.ReplayPage = DefaultReplayPage
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.Retry == 0 {
		c.Retry = DefaultRetry
	}
	if c.ShutdownRetry == 0 {
		c.ShutdownRetry = DefaultShutdownRetry
	}
	if c.StuckAfter == 0 {
		c.StuckAfter = max(DefaultStuckAfter, 2*c.ReadBlock)
	}
}

// Validate reports every problem with the config at once, joined with
// [errors.Join]. It never changes c. Call it after the defaults are applied
// (New does both); a zero field is reported as invalid here.
func (c Config) Validate() error {
	var errs []error // from Auth and Ingress, wrapped by their Validate
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	ing := c.Ingress
	if ing.JWT == nil && c.IngressJWT {
		ing.JWT = &Authenticator{} // stands for the one New builds from Auth
	}
	if err := ing.Validate(); err != nil {
		errs = append(errs, err)
	}
	var own []error
	if c.MaxBodyBytes < 1 {
		own = append(own, fmt.Errorf("gateway: Config: MaxBodyBytes is %d: must be 1 or more (0 for the default %d)", c.MaxBodyBytes, DefaultMaxBodyBytes))
	}
	if c.MaxBatchEvents < 1 {
		own = append(own, fmt.Errorf("gateway: Config: MaxBatchEvents is %d: must be 1 or more (0 for the default %d)", c.MaxBatchEvents, DefaultMaxBatchEvents))
	}
	if r := c.RateLimit; r.PerSecond != -1 {
		if math.IsNaN(r.PerSecond) || math.IsInf(r.PerSecond, 0) || r.PerSecond <= 0 {
			own = append(own, fmt.Errorf("gateway: Config: RateLimit.PerSecond is %v: must be a finite number above 0, or -1 to disable rate limiting", r.PerSecond))
		}
		if r.Burst < 1 {
			own = append(own, fmt.Errorf("gateway: Config: RateLimit.Burst is %d: must be 1 or more", r.Burst))
		}
	}
	for name, d := range map[string]time.Duration{
		"PublishTimeout":    c.PublishTimeout,
		"HeartbeatInterval": c.HeartbeatInterval,
		"WriteTimeout":      c.WriteTimeout,
		"ReadBlock":         c.ReadBlock,
		"CloseTimeout":      c.CloseTimeout,
		"Retry":             c.Retry,
		"ShutdownRetry":     c.ShutdownRetry,
	} {
		if d < time.Millisecond {
			own = append(own, fmt.Errorf("gateway: Config: %s is %s: must be at least 1ms (0 for the default)", name, d))
		}
	}
	if c.StuckAfter <= c.ReadBlock {
		own = append(own, fmt.Errorf("gateway: Config: StuckAfter is %s: must exceed ReadBlock (%s), or the reader's every blocking read would look stuck (0 for the default %s)", c.StuckAfter, c.ReadBlock, DefaultStuckAfter))
	}
	if c.ClientBuffer < 1 {
		own = append(own, fmt.Errorf("gateway: Config: ClientBuffer is %d: must be 1 or more (0 for the default %d)", c.ClientBuffer, DefaultClientBuffer))
	}
	if c.ReplayPage < 1 {
		own = append(own, fmt.Errorf("gateway: Config: ReplayPage is %d: must be 1 or more (0 for the default %d)", c.ReplayPage, DefaultReplayPage))
	}
	for i, o := range c.AllowedOrigins {
		if o == "" {
			own = append(own, fmt.Errorf("gateway: Config: AllowedOrigins[%d] is empty: use an origin such as \"https://app.example.com\", or \"*\"", i))
		}
	}
	return errors.Join(append(errs, invalidConfig(own))...)
}

// Gateway is the HTTP side of the bus: CloudEvents ingress
// (POST /v1/events) into the bus publisher, and server-sent events
// (GET /v1/stream) from the bus's push stream to browsers. See the package
// documentation for the concurrency contract.
type Gateway struct {
	bus     *bus.Bus
	cfg     Config
	logger  watermill.LoggerAdapter
	auth    *Authenticator
	ingress *IngressAuth
	limiter *rateLimiter   // nil when rate limiting is disabled
	shared  *sharedLimiter // nil unless RateLimit.PerProcess is false
	hub     *hub
	metrics *metrics // nil without Config.Registerer

	// gate admits ingress requests and lets Close wait for them (gate.go).
	gate ingressGate

	mux     *http.ServeMux
	handler http.Handler

	routesMu sync.Mutex
	routes   []string // the patterns registered on mux, in order
}

// New validates cfg and returns a Gateway publishing through and streaming
// from b. It does not contact Redis. Call Run (or ListenAndServe) to start
// the push-stream reader; the stream endpoint answers 503 until it runs.
// Ingress needs no Run: each request is decoded and published on its own
// goroutine (net/http's), and Close waits for those in flight. The gateway
// never closes b. A nil logger logs nothing.
func New(b *bus.Bus, cfg Config, logger watermill.LoggerAdapter) (*Gateway, error) {
	if b == nil {
		return nil, errors.New("gateway: New: the bus is nil")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	glog := logger.With(watermill.LogFields{"component": "gateway"})
	authCfg := cfg.Auth
	if authCfg.JWKS.URL != "" && authCfg.JWKS.OnRefreshError == nil {
		authCfg.JWKS.OnRefreshError = func(err error) {
			glog.Error("JWKS fetch failed; the keys fetched before are kept", err, watermill.LogFields{"url": authCfg.JWKS.URL})
		}
	}
	auth, err := NewAuthenticator(authCfg)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			auth.Close()
		}
	}()
	ingCfg := cfg.Ingress
	if ingCfg.JWT == nil && cfg.IngressJWT {
		ingCfg.JWT = auth
	}
	ingress, err := NewIngressAuth(ingCfg)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		bus:     b,
		cfg:     cfg,
		logger:  glog,
		auth:    auth,
		ingress: ingress,
		mux:     http.NewServeMux(),
	}
	if cfg.RateLimit.PerSecond != -1 {
		g.limiter, err = newRateLimiter(cfg.RateLimit.PerSecond, cfg.RateLimit.Burst, 0)
		if err != nil {
			return nil, err
		}
		if !cfg.RateLimit.PerProcess {
			g.shared = newSharedLimiter(b.Client(), b.Config().StreamPrefix, cfg.RateLimit, g.limiter, g.logger)
		}
	}
	g.hub = newHub(b.Client(), b.Config().PushKey(), cfg.ReadBlock, cfg.ClientBuffer, g.logger)
	if g.metrics, err = newMetrics(cfg.Registerer, g); err != nil {
		return nil, err
	}
	g.handle("POST "+EventsPath, g.metrics.countIngress(g.serveEvents))
	g.handle("GET "+StreamPath, http.HandlerFunc(g.serveStream))
	g.handle("GET "+OpenAPIPath, http.HandlerFunc(serveOpenAPI))
	g.handler = cors(cfg.AllowedOrigins, g.mux)
	ok = true
	return g, nil
}

// Config returns the gateway's configuration, defaults applied.
func (g *Gateway) Config() Config { return g.cfg }

// Handler returns the gateway's HTTP handler: POST /v1/events,
// GET /v1/stream, GET /openapi.json and whatever was mounted with Mount,
// behind CORS for Config.AllowedOrigins (preflights answered 204, no
// credentials mode; docs/gateway.md). It is safe for concurrent use.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Mount registers h for pattern on the gateway's mux, e.g.
// Mount("GET /healthz", health) for the observability handlers. Patterns are
// those of [http.ServeMux]; like ServeMux.Handle, Mount panics when pattern
// is invalid or conflicts with one already registered. Mounted handlers
// are served behind the same CORS policy and get no authentication from the
// gateway: they bring their own.
func (g *Gateway) Mount(pattern string, h http.Handler) {
	g.handle(pattern, h)
}

func (g *Gateway) handle(pattern string, h http.Handler) {
	g.routesMu.Lock()
	defer g.routesMu.Unlock()
	g.mux.Handle(pattern, h)
	g.routes = append(g.routes, pattern)
}

// Routes returns the patterns registered on the gateway's mux, in the order
// they were registered: "POST /v1/events", "GET /v1/stream",
// "GET /openapi.json", then those of Mount. Each is in the OpenAPI document
// (see [OpenAPI]); eventbus serve logs them as its endpoints.
func (g *Gateway) Routes() []string {
	g.routesMu.Lock()
	defer g.routesMu.Unlock()
	return slices.Clone(g.routes)
}

// Clients returns how many browser streams are open.
func (g *Gateway) Clients() int { return g.hub.clientCount() }

// Running returns a channel closed once the push-stream reader runs (it has
// found its starting position), so that streams get live events.
func (g *Gateway) Running() <-chan struct{} { return g.hub.running }

// Run reads the push stream and fans events out to the open streams until
// ctx is done or Close is called, then closes every stream. It returns nil
// when stopped by ctx and ErrGatewayClosed when stopped by Close. A Gateway
// runs once: Run after Close, or after an earlier Run returned, returns
// ErrGatewayClosed, and Run while running returns an error. Redis errors do
// not stop it: it logs them and retries with backoff (50ms doubling to 5s);
// after an outage, if entries it had not read were trimmed meanwhile, it
// closes the open streams so that they resume and report the gap.
func (g *Gateway) Run(ctx context.Context) error {
	return g.hub.run(ctx)
}

// Close stops the push-stream reader and closes every open stream (their
// browsers reconnect elsewhere and resume), and stops ingress: from then on
// POST /v1/events answers 503 and the requests already being published are
// answered. It waits for the
// reader and for those requests for up to Config.CloseTimeout each. It never
// closes the bus. Safe to call more than once.
func (g *Gateway) Close() error {
	g.auth.Close()
	return errors.Join(g.hub.close(g.cfg.CloseTimeout), g.gate.close(g.cfg.CloseTimeout))
}

// ListenAndServe serves Handler on Config.ListenAddr and runs the
// push-stream reader until ctx is done, then closes the streams and shuts
// the server down (waiting up to Config.CloseTimeout for requests in
// flight). It returns nil after a clean shutdown.
func (g *Gateway) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", g.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("gateway: listen on %s: %w", g.cfg.ListenAddr, err)
	}
	return g.Serve(ctx, ln)
}

// Serve is ListenAndServe on a listener of the caller's (which it closes).
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: it would cut long-lived streams. Each stream
		// write has its own deadline (Config.WriteTimeout).
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	runErr := make(chan error, 1)
	wg.Go(func() { runErr <- g.Run(ctx) })
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- srv.Serve(ln) })

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		serveErr <- err // keep it for below
	}
	_ = g.Close()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.CloseTimeout)
	defer scancel()
	shutdownErr := srv.Shutdown(sctx)
	cancel()
	wg.Wait()
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("gateway: serve: %w", err)
	}
	if err := <-runErr; err != nil && !errors.Is(err, ErrGatewayClosed) {
		return err
	}
	return shutdownErr
}
