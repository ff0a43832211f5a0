package main

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/observe"
	"github.com/shared-infra/eventbus/router"
)

// Environment variables serve reads secrets from (never flags: command lines
// are visible to every user of the machine).
const (
	envJWTSecret = "EVENTBUS_JWT_SECRET"
	envAPIKeys   = "EVENTBUS_API_KEYS"
)

type serveOptions struct {
	listen         string
	jwtSecretFile  string
	jwtPublicKey   string
	jwtIssuer      string
	jwtAudience    string
	jwtLeeway      time.Duration
	jwks           jwksOptions
	apiKeysFile    string
	ingressJWT     bool
	allowedOrigins []string
	rate           float64
	burst          int
	health         bool
	logLevel       string
	logFormat      string
}

func newServeCmd(g *globals) *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP gateway: CloudEvents ingress and server-sent events to browsers",
		Long: `Run the HTTP gateway of the bus until interrupted:

  POST /v1/events   CloudEvents (structured, batch or binary mode) published
                    on the bus; 202 {"ids":[...]} once they are in Redis
  GET  /v1/stream   server-sent events: every event addressed to the
                    browser's rooms, its user, or everyone (--room, --user,
                    --broadcast of 'eventbus publish'); resumes from
                    Last-Event-ID
  GET  /healthz /readyz /stats /metrics
                    liveness, readiness (Redis reachable), a stats snapshot
                    and Prometheus metrics (unless --health=false)
  GET  /openapi.json
                    the OpenAPI 3.1 description of these endpoints

Browsers authenticate with a JWT (Authorization: Bearer, or ?access_token=
for EventSource): an HS256 secret from $EVENTBUS_JWT_SECRET or
--jwt-secret-file, an RS256 public key (--jwt-public-key), and/or the
RSA and EC keys of an identity provider's JSON Web Key Set (--jwks-url:
RS256/384/512, PS256/384/512, ES256/384/512), fetched again every
--jwks-refresh and when a token names a kid it does not hold (a rotated
key), at most once per --jwks-unknown-kid-refresh. Services
POST with an API key ($EVENTBUS_API_KEYS, comma-separated, or
--api-keys-file, one per line) or, with --ingress-jwt, a JWT that grants
"publish". Secrets are never taken on the command line, nor printed.

API keys are at least 16 bytes (gateway.MinAPIKeyLen) without whitespace;
the HS256 secret at least 32 bytes. Generate them with openssl rand -hex 24
and openssl rand -hex 32.

Every flag below can also come from the environment: --listen from
EVENTBUS_LISTEN, --allow-origin from EVENTBUS_ALLOW_ORIGIN (comma-separated)
and so on, as each flag's help shows in [$...]. A flag on the command line
wins over its variable, the variable over the default. The global flags
come from EVENTBUS_REDIS_URL (else REDIS_URL), EVENTBUS_PREFIX and
EVENTBUS_SERVICE (serve's default service is eventbus-gateway: the source
of the events it publishes and the service /stats names). A value that is not valid for its flag stops serve with
exit code 2 and names the variable.

Logs go to stderr, as text (--log-format text, the default) or as one JSON
object per line (--log-format json). SIGINT/SIGTERM shut it down cleanly
(open streams are closed; browsers reconnect elsewhere and resume).`,
		Example: `  # HS256 JWTs for browsers, one API key for services
  export EVENTBUS_JWT_SECRET=$(openssl rand -hex 32)
  export EVENTBUS_API_KEYS=$(openssl rand -hex 24)
  eventbus serve --listen :8080 --allow-origin https://app.example.com

  # publish over HTTP
  curl -X POST localhost:8080/v1/events \
    -H "Authorization: Bearer $EVENTBUS_API_KEYS" \
    -H 'Content-Type: application/cloudevents+json' \
    -d '{"specversion":"1.0","id":"e-1","source":"curl","type":"photo.uploaded","data":{"photoId":"p-42"}}'

  # RS256 tokens from an identity provider, accepted on ingress too
  eventbus serve --jwt-public-key idp.pem --jwt-issuer https://idp.example.com --ingress-jwt

  # keys from the provider's JWKS, followed as it rotates them
  eventbus serve --jwks-url https://idp.example.com/.well-known/jwks.json --jwt-issuer https://idp.example.com`,
		Args: usageArgs(cobra.NoArgs),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			g.serviceSet = cmd.Flags().Changed("service")
			return runServe(cmd.Context(), g, o)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", gateway.DefaultListenAddr, "address to listen on (host:port; port 0 picks a free one)")
	f.StringVar(&o.jwtSecretFile, "jwt-secret-file", "", "file holding the HS256 secret (at least 32 bytes; default $"+envJWTSecret+")")
	f.StringVar(&o.jwtPublicKey, "jwt-public-key", "", "PEM file of the RS256 public key that verifies JWTs")
	f.StringVar(&o.jwtIssuer, "jwt-issuer", "", "required iss claim of JWTs (default: not checked)")
	f.StringVar(&o.jwtAudience, "jwt-audience", "", "required aud claim of JWTs (default: not checked)")
	f.DurationVar(&o.jwtLeeway, "jwt-leeway", 0, "clock skew tolerated on exp/nbf/iat")
	o.jwks.flags(cmd)
	f.StringVar(&o.apiKeysFile, "api-keys-file", "", "file of ingress API keys, one per line, each at least 16 bytes without whitespace (default $"+envAPIKeys+", comma-separated)")
	f.BoolVar(&o.ingressJWT, "ingress-jwt", false, "accept JWTs that grant \"publish\" on ingress")
	f.StringSliceVar(&o.allowedOrigins, "allow-origin", nil, "origin browsers may call from (CORS; repeat; \"*\" for any)")
	f.Float64Var(&o.rate, "rate", gateway.DefaultRatePerSecond, "ingress requests per second per principal (-1: no limit)")
	f.IntVar(&o.burst, "burst", gateway.DefaultRateBurst, "ingress requests allowed at once per principal")
	f.BoolVar(&o.health, "health", true, "serve /healthz, /readyz, /stats and /metrics")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text (slog's key=value lines) or json (one JSON object per line)")
	envFlags(cmd)
	return cmd
}

func (o serveOptions) gatewayConfig() (gateway.Config, error) {
	cfg := gateway.Config{
		ListenAddr:     o.listen,
		IngressJWT:     o.ingressJWT,
		AllowedOrigins: o.allowedOrigins,
		RateLimit:      gateway.RateLimit{PerSecond: o.rate, Burst: o.burst},
		Auth:           gateway.AuthConfig{Issuer: o.jwtIssuer, Audience: o.jwtAudience, Leeway: o.jwtLeeway},
	}
	secret, err := readHMACSecret(o.jwtSecretFile)
	if err != nil {
		return cfg, err
	}
	cfg.Auth.HMACSecret = secret
	if cfg.Auth.JWKS, err = o.jwks.config(); err != nil {
		return cfg, err
	}
	if o.jwtPublicKey != "" {
		key, err := readRSAPublicKey(o.jwtPublicKey)
		if err != nil {
			return cfg, usagef("--jwt-public-key %s: %v", o.jwtPublicKey, err)
		}
		cfg.Auth.RSAPublicKey = key
	}
	var keys []string
	if o.apiKeysFile != "" {
		b, err := os.ReadFile(o.apiKeysFile)
		if err != nil {
			return cfg, usagef("--api-keys-file: %v", err)
		}
		for l := range strings.SplitSeq(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				keys = append(keys, l)
			}
		}
	} else {
		for k := range strings.SplitSeq(os.Getenv(envAPIKeys), ",") {
			if k = strings.TrimSpace(k); k != "" {
				keys = append(keys, k)
			}
		}
	}
	cfg.Ingress.APIKeys = keys
	return cfg, nil
}

func readRSAPublicKey(path string) (*rsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block in the file")
	}
	if k, err := x509.ParsePKCS1PublicKey(block.Bytes); err == nil {
		return k, nil
	}
	if pub, err := x509.ParsePKIXPublicKey(block.Bytes); err == nil {
		if k, ok := pub.(*rsa.PublicKey); ok {
			return k, nil
		}
		return nil, fmt.Errorf("the key is a %T, not an RSA key", pub)
	}
	if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
		if k, ok := cert.PublicKey.(*rsa.PublicKey); ok {
			return k, nil
		}
	}
	return nil, errors.New("not an RSA public key (PKIX, PKCS #1 or a certificate)")
}

// openBus opens serve's bus. A Redis that cannot be reached yet
// (bus.IsTransient) is no reason not to start: serve listens at once, says
// so on stderr, and answers /readyz 503 until Redis answers, while the
// gateway's stream reader retries with backoff. A misconfiguration
// (credentials refused, an ACL denial, TLS) fails at once.
func (g *globals) openBus(ctx context.Context) (*bus.Bus, error) {
	cfg, err := g.config()
	if err != nil {
		return nil, err
	}
	b, err := bus.New(cfg, nil)
	if err != nil {
		return nil, classify(err)
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	err = b.Client().Ping(pctx).Err()
	switch {
	case err == nil:
	case ctx.Err() != nil:
		_ = b.Close()
		return nil, &failure{err: errors.New("interrupted")}
	case bus.IsTransient(err):
		fmt.Fprintf(g.io.err, "eventbus serve: Redis at %s unreachable (%s); serving anyway, /readyz answers 503 until Redis answers\n",
			bus.RedactURL(g.redisURL()), g.redact(unreachableReason(err)))
	default:
		_ = b.Close()
		return nil, g.redisError("ping Redis", err)
	}
	return b, nil
}

func runServe(ctx context.Context, g *globals, o serveOptions) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usagef("invalid --log-level %q: use debug, info, warn or error", o.logLevel)
	}
	cfg, err := o.gatewayConfig()
	if err != nil {
		return err
	}
	newHandler, err := logHandler(o.logFormat)
	if err != nil {
		return err
	}
	sl := slog.New(newHandler(g.io.err, &slog.HandlerOptions{Level: level}))
	logger := watermill.NewSlogLogger(sl)
	// The health endpoints' router has no handlers: its info logs (Watermill
	// starting and stopping its idle handler) say nothing useful.
	quiet := watermill.NewSlogLogger(slog.New(newHandler(g.io.err, &slog.HandlerOptions{Level: max(level, slog.LevelWarn)})))

	if !g.serviceSet {
		g.service = defaultServeService // the source of its events, and /stats' service
	}
	g.mover = true // a long-running bus: it moves due delayed events too
	b, err := g.openBus(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	var reg *prometheus.Registry
	if o.health {
		reg = prometheus.NewRegistry()
		reg.MustRegister(
			buildInfoCollector(readBuildVersion()),
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		)
		cfg.Registerer = reg
	}
	gw, err := gateway.New(b, cfg, logger)
	if err != nil {
		// New only validates the configuration.
		return usagef("%s — browsers need $%s, --jwt-secret-file, --jwt-public-key or --jwks-url; services need $%s, --api-keys-file or --ingress-jwt",
			oneLine(err.Error()), envJWTSecret, envAPIKeys)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if o.health {
		// The observer needs a router: one with no handlers, whose readiness
		// is the bus's Redis answering.
		r, err := router.New(b, router.Config{}, quiet)
		if err != nil {
			return &failure{err: fmt.Errorf("health endpoints: %w", err)}
		}
		obs, err := observe.New(r, observe.Config{Registerer: reg}, quiet)
		if err != nil {
			return &failure{err: fmt.Errorf("health endpoints: %w", err)}
		}
		defer obs.Close()
		gw.Mount("GET "+observe.PathHealthz, obs.Healthz())
		gw.Mount("GET "+observe.PathReadyz, gatewayReadyz(gw, obs.Readyz()))
		gw.Mount("GET "+observe.PathStats, obs.StatsHandler())
		gw.Mount("GET "+observe.PathMetrics, obs.Metrics())
		wg.Go(func() {
			if err := r.Run(ctx); err != nil && ctx.Err() == nil {
				quiet.Error("health router stopped", err, nil)
			}
		})
		defer func() {
			cancel()
			_ = r.Close()
		}()
	}
	// Every route on the gateway's mux, as registered: the OpenAPI document
	// (GET /openapi.json) describes each, and a test checks both ways.
	endpoints := strings.Join(gw.Routes(), ", ")

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return &failure{err: fmt.Errorf("cannot listen on %s: %v — pick another --listen address", o.listen, err)}
	}
	if o.logFormat == "json" {
		sl.Info("eventbus serve: listening on http://"+ln.Addr().String(), "endpoints", endpoints,
			"redis", bus.RedactURL(g.redisURL()), "prefix", b.Config().StreamPrefix, "version", readBuildVersion().Version)
	} else {
		fmt.Fprintf(g.io.err, "eventbus serve: listening on http://%s (%s); Redis %s, prefix %q; Ctrl-C to stop\n",
			ln.Addr(), endpoints, bus.RedactURL(g.redisURL()), b.Config().StreamPrefix)
	}
	err = gw.Serve(ctx, ln)
	cancel()
	wg.Wait()
	if err != nil {
		return &failure{err: fmt.Errorf("gateway: %s", g.redact(err.Error()))}
	}
	return nil
}

// logHandler returns the slog handler constructor of --log-format.
func logHandler(format string) (func(io.Writer, *slog.HandlerOptions) slog.Handler, error) {
	switch format {
	case "text":
		return func(w io.Writer, o *slog.HandlerOptions) slog.Handler { return slog.NewTextHandler(w, o) }, nil
	case "json":
		return func(w io.Writer, o *slog.HandlerOptions) slog.Handler { return slog.NewJSONHandler(w, o) }, nil
	}
	return nil, usagef("invalid --log-format %q: use text or json", format)
}

// defaultServeService is serve's --service when none is given: the source
// of the events ingress publishes, and the service /stats names.
const defaultServeService = "eventbus-gateway"

// gatewayReadyz is /readyz: 503 while the gateway is not ready (its
// push-stream reader not running, or stuck: see gateway.Ready), else the
// observer's readiness (Redis answering).
func gatewayReadyz(gw *gateway.Gateway, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := gw.Ready(); err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{
				"status": observe.StatusDown,
				"checks": map[string]any{"gateway": map[string]any{"status": observe.StatusDown, "error": err.Error()}},
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}
