package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/spf13/cobra"

	"github.com/shared-infra/eventbus/internal/demo"
)

func newDemoCmd(g *globals) *cobra.Command {
	var (
		keep    bool
		timeout time.Duration
		scale   float64
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the photo pipeline end to end and trace its events (what 'make demo' runs)",
		Long: `Run the photo pipeline end to end: an api service uploads generated photos
(JPEG, PNG and GIF images, a truncated JPEG and a text file named .jpg) and
publishes photo.uploaded; a worker renders thumbnails; a notifier tells each
owner the outcome. Each service has its own bus and router, as separate
processes would. Every photo's events are traced as they happen, then a
summary is printed.

The demo runs on an embedded Redis unless --redis-url or REDIS_URL is set.
On a real Redis it uses a fresh prefix ("demo-<hex>:"), deleted at the end
unless --keep is given; --prefix picks one (never deleted).

With POSTGRES_URL set, the api service writes each upload as a photos row and
its photo.uploaded event in one PostgreSQL transaction (the transactional
outbox, docs/outbox.md), forwarded to the bus by a forwarder in the api
process; without, it publishes directly. The first lines say which.

It exits 1 if the pipeline does not finish within --timeout.`,
		Example: `  # embedded Redis: nothing to set up
  eventbus demo

  # on a real Redis, keeping the streams to look at afterwards
  REDIS_URL=redis://127.0.0.1:6379/0 eventbus demo --keep
  eventbus --prefix demo-1a2b3c4d: tail 'photo.>' --from 0`,
		Args: usageArgs(cobra.NoArgs),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return usagef("invalid --timeout %s: use a positive duration", timeout)
			}
			if scale <= 0 || scale > 4 {
				return usagef("invalid --scale %g: use a factor above 0, at most 4", scale)
			}
			opts := demo.Options{Timeout: timeout, KeepStreams: keep, ImageScale: scale, PostgresURL: strings.TrimSpace(os.Getenv("POSTGRES_URL"))}
			if g.url != "" || strings.TrimSpace(os.Getenv("REDIS_URL")) != "" {
				if _, err := g.config(); err != nil {
					return err
				}
				opts.RedisURL = g.redisURL()
			}
			if cmd.Flag("prefix").Changed {
				opts.StreamPrefix = g.prefix
			}
			if verbose {
				opts.Logger = watermill.NewSlogLogger(slog.New(slog.NewTextHandler(g.io.err, nil)))
			}
			sum, err := demo.Run(cmd.Context(), g.io.out, opts)
			if err != nil {
				if cmd.Context().Err() != nil {
					return &failure{err: errors.New("demo interrupted")}
				}
				if opts.RedisURL != "" && isUnreachable(err) {
					return g.redisError("demo", err)
				}
				return &failure{err: fmt.Errorf("demo: %s", g.redact(err.Error()))}
			}
			if keep && opts.RedisURL != "" {
				fmt.Fprintf(g.io.out, "\nstreams kept under prefix %q; see them with: eventbus --prefix %s tail '>' --from 0\n", sum.StreamPrefix, sum.StreamPrefix)
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&keep, "keep", false, "keep the streams in Redis after the run (not with the embedded Redis)")
	f.DurationVar(&timeout, "timeout", demo.DefaultTimeout, "give up if the pipeline has not finished by then")
	f.Float64Var(&scale, "scale", 1, "scale of the generated images (1 = 480 to 2400 pixels wide)")
	f.BoolVarP(&verbose, "verbose", "v", false, "log what the services do on stderr")
	return cmd
}
