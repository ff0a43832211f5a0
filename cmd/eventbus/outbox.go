package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/spf13/cobra"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/outbox"
)

func newOutboxCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "outbox",
		Short: "Transactional outbox on PostgreSQL (docs/outbox.md)",
	}
	cmd.AddCommand(newOutboxForwardCmd(g))
	return cmd
}

func newOutboxForwardCmd(g *globals) *cobra.Command {
	var (
		pgURL      string
		table      string
		batch      int
		poll       time.Duration
		untilEmpty bool
		verbose    bool
	)
	cmd := &cobra.Command{
		Use:   "forward",
		Short: "Run an outbox forwarder: move committed events from the outbox table to the bus",
		Long: `Run the outbox forwarder alone: it reads the outbox table of the PostgreSQL
database at --postgres-url (default $POSTGRES_URL), publishes each committed
event to the bus (with its id, so the bus's deduplication drops an event a
killed forwarder had published but not yet deleted), and deletes its row.
It runs until interrupted, or with --until-empty until the table is empty.`,
		Example: `  POSTGRES_URL=postgres://app@db:5432/app eventbus --service photo-api outbox forward
  eventbus outbox forward --postgres-url postgres://postgres@127.0.0.1:5432/test --until-empty`,
		Args: usageArgs(cobra.NoArgs),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if pgURL == "" {
				pgURL = strings.TrimSpace(os.Getenv("POSTGRES_URL"))
			}
			if pgURL == "" {
				return usagef("no PostgreSQL: give --postgres-url or set POSTGRES_URL (postgres://user@host:5432/db)")
			}
			cfg := outbox.ForwarderConfig{Table: table, BatchSize: batch, PollInterval: poll}
			if err := cfg.Validate(); err != nil {
				return usagef("%s", err)
			}
			ctx := cmd.Context()
			db, err := sql.Open("pgx", pgURL)
			if err != nil {
				return usagef("invalid --postgres-url %s: %v", bus.RedactURL(pgURL), err)
			}
			defer db.Close()
			pctx, cancel := context.WithTimeout(ctx, pingTimeout)
			err = db.PingContext(pctx)
			cancel()
			if err != nil {
				return &failure{err: fmt.Errorf("PostgreSQL at %s does not answer: %v", bus.RedactURL(pgURL), err)}
			}
			b, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			var logger watermill.LoggerAdapter
			if verbose {
				logger = watermill.NewSlogLogger(slog.New(slog.NewTextHandler(g.io.err, nil)))
			}
			fw, err := outbox.NewForwarder(db, b.Publisher(), cfg, logger)
			if err != nil {
				return usagef("%s", err)
			}
			runCtx, stop := context.WithCancel(ctx)
			defer stop()
			done := make(chan error, 1)
			go func() { done <- fw.Run(runCtx) }()
			select {
			case <-fw.Running():
			case err := <-done:
				return &failure{err: fmt.Errorf("forwarder stopped at start: %v", err)}
			}
			name := table
			if name == "" {
				name = outbox.DefaultTable
			}
			fmt.Fprintf(g.io.err, "forwarding %s to the bus (prefix %q)\n", name, b.Config().StreamPrefix)
			if untilEmpty {
				if err := waitEmpty(ctx, db, name, done); err != nil {
					_ = fw.Close()
					return err
				}
			} else {
				select {
				case <-ctx.Done():
				case err := <-done:
					if err != nil {
						return &failure{err: fmt.Errorf("forwarder stopped: %v", err)}
					}
				}
			}
			if err := fw.Close(); err != nil {
				return &failure{err: fmt.Errorf("closing the forwarder: %v", err)}
			}
			fmt.Fprintf(g.io.out, "outbox %s empty\n", name)
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&pgURL, "postgres-url", "", "PostgreSQL URL (default $POSTGRES_URL)")
	f.StringVar(&table, "table", outbox.DefaultTable, "outbox table")
	f.IntVar(&batch, "batch", outbox.DefaultBatchSize, "rows per forwarding transaction")
	f.DurationVar(&poll, "poll", outbox.DefaultPollInterval, "wait after a read found no row")
	f.BoolVar(&untilEmpty, "until-empty", false, "exit once the outbox table is empty")
	f.BoolVarP(&verbose, "verbose", "v", false, "log what the forwarder does on stderr")
	return cmd
}

// waitEmpty returns once the outbox table has no row.
func waitEmpty(ctx context.Context, db *sql.DB, table string, done <-chan error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		rows, _, err := outbox.Pending(ctx, db, table)
		if err == nil && rows == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return &failure{err: errors.New("interrupted")}
		case err := <-done:
			return &failure{err: fmt.Errorf("forwarder stopped: %v", err)}
		case <-tick.C:
		}
	}
}
