package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/shared-infra/eventbus/bus"
)

// Defaults of the global flags.
const (
	defaultRedisURL = "redis://127.0.0.1:6379/0"
	defaultService  = "eventbus-cli"
	// pingTimeout bounds the first contact with Redis.
	pingTimeout = 5 * time.Second
)

// globals holds the flags every subcommand shares and the standard streams.
type globals struct {
	io      *stdio
	url     string // --redis-url; "" means $REDIS_URL, else defaultRedisURL
	prefix  string // --prefix
	service string // --service
	// serviceSet: --service (or $EVENTBUS_SERVICE for serve) was given.
	serviceSet bool
	// mover: the bus moves due scheduled events (serve only; a one-shot
	// command would trim streams by its own default retention).
	mover bool
}

// redisURL returns the Redis URL to use: --redis-url, else $REDIS_URL, else
// the default.
func (g *globals) redisURL() string {
	if g.url != "" {
		return g.url
	}
	if u := strings.TrimSpace(os.Getenv("REDIS_URL")); u != "" {
		return u
	}
	return defaultRedisURL
}

// redact removes the Redis credentials from s, wherever they appear.
func (g *globals) redact(s string) string {
	return bus.Redactor(g.redisURL(), nil)(s)
}

// config returns the bus configuration of the flags, checking it without
// contacting Redis.
func (g *globals) config() (bus.Config, error) {
	raw := g.redisURL()
	if _, err := bus.ParseRedisURL(raw); err != nil {
		return bus.Config{}, usagef("invalid Redis URL %s: %s — use redis://[user:password@]host:port/db, rediss://…, the Sentinel form redis://sentinel:26379?master_name=NAME&addr=sentinel2:26379 or the Cluster form redis://node1:7000?addr=node2:7001 in --redis-url/REDIS_URL",
			bus.RedactURL(raw), g.redact(err.Error()))
	}
	cfg := bus.Config{ServiceName: g.service, RedisURL: raw, StreamPrefix: g.prefix, SchedulePollInterval: -1}
	if g.mover {
		cfg.SchedulePollInterval = 0 // the default
	}
	if err := cfg.Validate(); err != nil {
		return bus.Config{}, usagef("%s — check --service and --prefix", g.redact(err.Error()))
	}
	return cfg, nil
}

// connect opens the bus and checks that Redis answers. The caller closes it.
func (g *globals) connect(ctx context.Context) (*bus.Bus, error) {
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
	if err := b.Client().Ping(pctx).Err(); err != nil {
		_ = b.Close()
		if ctx.Err() != nil {
			return nil, &failure{err: errors.New("interrupted")}
		}
		return nil, g.redisError("ping Redis", err)
	}
	return b, nil
}

// runE adapts a subcommand's function to cobra: every error it returns
// becomes a usageError or a failure (see classify), so that run can tell
// them from cobra's own parsing errors.
func runE(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		return classify(fn(cmd, args))
	}
}

// usageArgs wraps a cobra argument validator so that its errors say how to
// get help.
func usageArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return usagef("%v — usage: %s (see '%s --help')", err, cmd.UseLine(), cmd.CommandPath())
		}
		return nil
	}
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "eventbus",
		Short: "Publish, follow and inspect events on the Redis Streams event bus",
		Long: `eventbus is the command-line tool of the event bus (github.com/shared-infra/eventbus).

It publishes events, follows them live, shows each handler's lag and pending
count, and manages the dead-letter queue, against the Redis the services use.
It also runs the HTTP gateway (serve), the photo pipeline demo (demo) and the
benchmark of the bus against plain go-redis and watermill-redisstream (bench).

Event types are dot-separated tokens of [a-z0-9_-], e.g. photo.uploaded.
Patterns follow NATS subjects: '*' matches exactly one token, '>' one or more
trailing tokens (only last): photo.* matches photo.uploaded but not
photo.processing.completed; photo.> matches both.

Exit codes: 0 success, 1 operational failure (Redis unreachable, publish
failed), 2 usage error (unknown flag, bad arguments, invalid type, pattern or
JSON).`,
		Example: `  # Publish one event and print its id
  eventbus publish photo.uploaded '{"photoId":"p-42"}' --subject p-42

  # Publish one event per JSON line of a file
  eventbus publish photo.uploaded - < uploads.jsonl

  # Follow every photo event, replaying the last 10 minutes first
  eventbus tail 'photo.>' --from 10m

  # Handlers, lag and pending counts; the dead-letter queue
  eventbus stats
  eventbus dlq list

  # The photo pipeline end to end, on an embedded Redis
  eventbus demo

  # Benchmark the bus on a Redis of your own (never a production one)
  eventbus bench --rounds 3

  # The HTTP gateway (ingress and server-sent events)
  EVENTBUS_JWT_SECRET=... EVENTBUS_API_KEYS=... eventbus serve --listen :8080

  # Another Redis and prefix
  REDIS_URL=redis://:secret@redis.internal:6379/0 eventbus --prefix staging: stats`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	// --version prints the line of 'eventbus version'.
	root.Version = readBuildVersion().String()
	root.SetVersionTemplate("{{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&g.url, "redis-url", "", "Redis URL, redis://[user:password@]host:port/db or rediss://…; Sentinel: redis://sentinel:26379?master_name=NAME[&addr=…]; Cluster: redis://node:7000?addr=node2:7001[&addr=…] (default $REDIS_URL, else "+defaultRedisURL+")")
	pf.StringVar(&g.prefix, "prefix", bus.DefaultStreamPrefix, "stream key prefix of the bus")
	pf.StringVar(&g.service, "service", defaultService, "service name: the source of published events")

	root.AddCommand(
		newPublishCmd(g),
		newTailCmd(g),
		newStatsCmd(g),
		newDLQCmd(g),
		newSchemaCmd(g),
		newReplayCmd(g),
		newScheduledCmd(g),
		newServeCmd(g),
		newBenchCmd(g),
		newDemoCmd(g),
		newOutboxCmd(g),
		newTokenCmd(g),
		newCatalogCmd(g),
		newVersionCmd(g),
	)
	return root
}
