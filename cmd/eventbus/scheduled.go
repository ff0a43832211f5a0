package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/shared-infra/eventbus/bus"
)

func newScheduledCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scheduled",
		Short: "List and cancel events scheduled for later delivery",
		Long: `Events published with a delay (bus.WithDelay, bus.WithDeliverAt, Watermill's
components/delay metadata, 'eventbus publish --delay/--at') wait in Redis
until a running bus moves them onto their stream. List shows them, soonest
first per type; cancel removes one before it is due.`,
		Example: `  eventbus scheduled list
  eventbus scheduled list --type photo.retry --json
  eventbus scheduled cancel 8f14e45f-ceea-467f-a0e6-3b1f0c9a1e2d`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q — its commands are list and cancel (see 'eventbus scheduled --help')", args[0], cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newScheduledListCmd(g), newScheduledCancelCmd(g))
	return cmd
}

func newScheduledListCmd(g *globals) *cobra.Command {
	var (
		typ    string
		limit  int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List scheduled events",
		Args:  usageArgs(cobra.NoArgs),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if typ != "" {
				if err := bus.ValidateType(typ); err != nil {
					return typeError(err)
				}
			}
			if limit < 0 {
				return usagef("invalid --limit %d: use a positive number, or 0 for all", limit)
			}
			ctx := cmd.Context()
			b, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			evs, err := b.ListScheduled(ctx, typ, limit)
			if err != nil {
				return g.redisError("list scheduled events", err)
			}
			if asJSON {
				for _, e := range evs {
					var event json.RawMessage
					if e.Message != nil {
						event = decodeEntry(e.Type, redis.XMessage{Values: messageValues(e.Message)}).JSON()
					}
					line, err := json.Marshal(struct {
						ID    string          `json:"id"`
						Type  string          `json:"type"`
						Due   time.Time       `json:"due"`
						Event json.RawMessage `json:"event,omitempty"`
					}{e.ID, e.Type, e.Due.UTC(), event})
					if err != nil {
						return &failure{err: err}
					}
					if _, err := g.io.out.Write(append(line, '\n')); err != nil {
						return &failure{err: fmt.Errorf("write output: %w", err)}
					}
				}
				return nil
			}
			if len(evs) == 0 {
				_, err := fmt.Fprintln(g.io.out, "no scheduled events")
				return err
			}
			tw := tabwriter.NewWriter(g.io.out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTYPE\tDUE")
			for _, e := range evs {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", e.ID, e.Type, e.Due.UTC().Format(time.RFC3339Nano))
			}
			if err := tw.Flush(); err != nil {
				return &failure{err: fmt.Errorf("write output: %w", err)}
			}
			_, err = fmt.Fprintf(g.io.out, "\n%s\n", plural(int64(len(evs)), "scheduled event"))
			return err
		}),
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "only scheduled events of this type")
	f.IntVar(&limit, "limit", 100, "show at most this many (0 = all)")
	f.BoolVar(&asJSON, "json", false, "print JSON lines, with the event")
	return cmd
}

func newScheduledCancelCmd(g *globals) *cobra.Command {
	var typ string
	cmd := &cobra.Command{
		Use:   "cancel ID...",
		Short: "Cancel scheduled events before they are delivered",
		Args:  usageArgs(cobra.MinimumNArgs(1)),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if typ != "" {
				if err := bus.ValidateType(typ); err != nil {
					return typeError(err)
				}
			}
			ctx := cmd.Context()
			b, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			for _, id := range args {
				if err := b.CancelScheduled(ctx, typ, id); err != nil {
					if errors.Is(err, bus.ErrNotScheduled) {
						return &failure{err: fmt.Errorf("%s is not scheduled (unknown, cancelled or already delivered)", id)}
					}
					return g.redisError("cancel "+id, err)
				}
				fmt.Fprintf(g.io.out, "cancelled %s\n", id)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&typ, "type", "", "the event type (default: search every type)")
	return cmd
}
