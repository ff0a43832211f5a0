package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/shared-infra/eventbus/bus"
)

// defaultDLQLimit is how many dead letters list shows by default.
const defaultDLQLimit = 100

func newDLQCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List, show, redrive and purge dead letters",
		Long: `Manage the dead-letter queue: the events a handler gave up on after its last
retry (or at once, for a permanent error or a malformed entry), with the
reason, the handler and the attempt count.

Redrive puts dead letters back on their event type's stream, addressed to the
handler that gave up on them only: the handlers that had succeeded do not see
them again. Purge deletes them.

Redriving everything (--all) and purging ask for confirmation; pass --yes to
skip it (required when stdin is not a terminal).`,
		Example: `  eventbus dlq list
  eventbus dlq list --type photo.uploaded --json
  eventbus dlq show 1700000000000-0
  eventbus dlq redrive 1700000000000-0
  eventbus dlq redrive --handler thumbnail
  eventbus dlq redrive --all --yes
  eventbus dlq purge --yes`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q — its commands are list, show, redrive and purge (see 'eventbus dlq --help')", args[0], cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newDLQListCmd(g), newDLQShowCmd(g), newDLQRedriveCmd(g), newDLQPurgeCmd(g))
	return cmd
}

// dlqJSON is a dead letter as --json prints it.
type dlqJSON struct {
	ID       string          `json:"id"`
	Time     *time.Time      `json:"time,omitempty"`
	Type     string          `json:"type"`
	Handler  string          `json:"handler"`
	Group    string          `json:"group"`
	Attempts int             `json:"attempts"`
	Delivery int             `json:"delivery"`
	Reason   string          `json:"reason"`
	Event    json.RawMessage `json:"event"`
}

func toDLQJSON(d bus.DeadLetter) dlqJSON {
	j := dlqJSON{
		ID: d.ID, Type: d.Topic, Handler: d.Handler, Group: d.Group,
		Attempts: d.Attempts, Delivery: d.Delivery, Reason: d.Reason,
		Event: deadLetterEvent(d).JSON(),
	}
	if !d.Time.IsZero() {
		j.Time = &d.Time
	}
	return j
}

// deadLetterEvent decodes the event a dead letter holds.
func deadLetterEvent(d bus.DeadLetter) entry {
	values := make(map[string]any, len(d.Fields))
	for k, v := range d.Fields {
		values[k] = v
	}
	return decodeEntry(d.Topic, redis.XMessage{Values: values})
}

func newDLQListCmd(g *globals) *cobra.Command {
	var (
		typ, handler string
		limit        int
		asJSON       bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List dead letters, oldest first",
		Long: `List dead letters, oldest first: entry id, when the handler gave up, the event
type, the handler, its attempts and the reason (cut to fit; 'dlq show ID' has
all of it). --json prints one JSON object per line, with the event itself.`,
		Example: `  eventbus dlq list
  eventbus dlq list --type photo.uploaded --handler thumbnail
  eventbus dlq list --limit 0 --json | jq -r .reason | sort | uniq -c`,
		Args: usageArgs(cobra.NoArgs),
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
			q := b.DeadLetters()
			total, err := q.Len(ctx)
			if err != nil {
				return g.redisError("count dead letters", err)
			}
			var shown []bus.DeadLetter
			for start := "-"; limit == 0 || len(shown) < limit; {
				batch, err := q.List(ctx, start, 500)
				if err != nil {
					return g.redisError("list dead letters", err)
				}
				if len(batch) == 0 {
					break
				}
				for _, d := range batch {
					start = "(" + d.ID
					if (typ == "" || d.Topic == typ) && (handler == "" || d.Handler == handler) && (limit == 0 || len(shown) < limit) {
						shown = append(shown, d)
					}
				}
			}
			if asJSON {
				enc := json.NewEncoder(g.io.out)
				enc.SetEscapeHTML(false)
				for _, d := range shown {
					if err := enc.Encode(toDLQJSON(d)); err != nil {
						return &failure{err: fmt.Errorf("write output: %w", err)}
					}
				}
				return nil
			}
			return printDLQList(g.io.out, shown, total, limit, typ != "" || handler != "")
		}),
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "only dead letters of this event type")
	f.StringVar(&handler, "handler", "", "only dead letters of this handler")
	f.IntVar(&limit, "limit", defaultDLQLimit, "show at most this many (0 = all)")
	f.BoolVar(&asJSON, "json", false, "print JSON lines, one dead letter per line")
	return cmd
}

func printDLQList(w io.Writer, ds []bus.DeadLetter, total int64, limit int, filtered bool) error {
	if total == 0 {
		_, err := fmt.Fprintln(w, "no dead letters")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDEAD-LETTERED\tTYPE\tHANDLER\tATTEMPTS\tREASON")
	for _, d := range ds {
		when := "-"
		if !d.Time.IsZero() {
			when = d.Time.Local().Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", d.ID, when, orDash(d.Topic), orDash(d.Handler), d.Attempts, truncate(oneLine(d.Reason), 60))
	}
	if err := tw.Flush(); err != nil {
		return &failure{err: fmt.Errorf("write output: %w", err)}
	}
	switch {
	case filtered:
		fmt.Fprintf(w, "\n%d shown, %s in all\n", len(ds), plural(total, "dead letter"))
	case limit > 0 && int64(len(ds)) < total:
		fmt.Fprintf(w, "\n%d of %s shown (--limit 0 for all)\n", len(ds), plural(total, "dead letter"))
	default:
		fmt.Fprintf(w, "\n%s\n", plural(total, "dead letter"))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// checkDLQID checks the form of a dead-letter entry id.
func checkDLQID(id string) error {
	if !entryIDRe.MatchString(id) {
		return usagef("invalid dead-letter id %q: ids look like 1700000000000-0 (see eventbus dlq list)", id)
	}
	if _, _, err := bus.ParseStreamID(id); err != nil {
		return usagef("invalid dead-letter id %q: %v", id, err)
	}
	return nil
}

func newDLQShowCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one dead letter in full: why, which handler, the event and its data",
		Example: `  eventbus dlq show 1700000000000-0
  eventbus dlq show 1700000000000-0 --json | jq .event.data`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := checkDLQID(id); err != nil {
				return err
			}
			ctx := cmd.Context()
			b, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			d, err := b.DeadLetters().Get(ctx, id)
			if errors.Is(err, bus.ErrNotFound) {
				return &failure{err: fmt.Errorf("no dead letter %s (under prefix %q) — list them with 'eventbus dlq list'", id, b.Config().StreamPrefix)}
			}
			if err != nil {
				return g.redisError("read dead letter "+id, err)
			}
			if asJSON {
				out, err := json.MarshalIndent(toDLQJSON(d), "", "  ")
				if err != nil {
					return &failure{err: err}
				}
				_, err = fmt.Fprintf(g.io.out, "%s\n", out)
				return err
			}
			return printDeadLetter(g.io.out, d)
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func printDeadLetter(w io.Writer, d bus.DeadLetter) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "dead letter\t%s\n", d.ID)
	if !d.Time.IsZero() {
		fmt.Fprintf(tw, "dead-lettered\t%s\n", d.Time.Format(time.RFC3339Nano))
	}
	fmt.Fprintf(tw, "type\t%s\n", orDash(d.Topic))
	fmt.Fprintf(tw, "handler\t%s (consumer group %s)\n", orDash(d.Handler), orDash(d.Group))
	fmt.Fprintf(tw, "attempts\t%d (Redis delivery %d)\n", d.Attempts, d.Delivery)
	fmt.Fprintf(tw, "reason\t%s\n", oneLine(d.Reason))
	if err := tw.Flush(); err != nil {
		return &failure{err: fmt.Errorf("write output: %w", err)}
	}
	fmt.Fprint(w, "\nevent\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	ev := deadLetterEvent(d)
	if ev.Malformed != "" {
		fmt.Fprintf(tw, "  malformed\t%s\n", ev.Malformed)
	}
	for _, k := range slices.Sorted(maps.Keys(d.Fields)) {
		if k == bus.FieldData {
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\n", k, d.Fields[k])
	}
	if err := tw.Flush(); err != nil {
		return &failure{err: fmt.Errorf("write output: %w", err)}
	}
	data := []byte(d.Fields[bus.FieldData])
	fmt.Fprintf(w, "\ndata (%d bytes)\n", len(data))
	var pretty bytes.Buffer
	if json.Indent(&pretty, data, "  ", "  ") == nil {
		fmt.Fprintf(w, "  %s\n", pretty.Bytes())
	} else if len(data) > 0 {
		fmt.Fprintf(w, "  %s\n", strconv.Quote(string(data)))
	}
	return nil
}

func newDLQRedriveCmd(g *globals) *cobra.Command {
	var (
		f        bus.RedriveFilter
		all, yes bool
	)
	cmd := &cobra.Command{
		Use:   "redrive [ID...]",
		Short: "Put dead letters back on their event type's stream",
		Long: `Put the selected dead letters back on their event type's stream, addressed to
the handler that gave up on them only (the other handlers ack them unseen), and
remove them from the dead-letter queue.

Select them by id (arguments or --id), by --type and/or --handler, or all of
them with --all. --all asks for confirmation unless --yes is given; with no
terminal it requires --yes.`,
		Example: `  eventbus dlq redrive 1700000000000-0 1700000000001-0
  eventbus dlq redrive --type photo.uploaded --handler thumbnail
  eventbus dlq redrive --all --yes`,
		Args: cobra.ArbitraryArgs,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			f.IDs = append(f.IDs, args...)
			for _, id := range f.IDs {
				if err := checkDLQID(id); err != nil {
					return err
				}
			}
			if f.Type != "" {
				if err := bus.ValidateType(f.Type); err != nil {
					return typeError(err)
				}
			}
			selective := len(f.IDs) > 0 || f.Type != "" || f.Handler != ""
			switch {
			case all && selective:
				return usagef("--all redrives every dead letter; it cannot be combined with ids, --type or --handler")
			case !all && !selective:
				return usagef("say which dead letters to redrive: ids, --type, --handler, or --all for every one")
			case all && !yes && !g.io.inTTY:
				return usagef("refusing to redrive every dead letter without confirmation: stdin is not a terminal — pass --yes")
			}
			ctx := cmd.Context()
			b, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			q := b.DeadLetters()
			for _, id := range f.IDs {
				if _, err := q.Get(ctx, id); errors.Is(err, bus.ErrNotFound) {
					return &failure{err: fmt.Errorf("no dead letter %s (under prefix %q): nothing redriven — list them with 'eventbus dlq list'", id, b.Config().StreamPrefix)}
				} else if err != nil {
					return g.redisError("read dead letter "+id, err)
				}
			}
			if all {
				n, err := q.Len(ctx)
				if err != nil {
					return g.redisError("count dead letters", err)
				}
				if n == 0 {
					_, err := fmt.Fprintln(g.io.out, "no dead letters: nothing to redrive")
					return err
				}
				if err := confirm(ctx, g, yes, fmt.Sprintf("Redrive all %s to their event types' streams?", plural(n, "dead letter"))); err != nil {
					return err
				}
			}
			n, err := q.Redrive(ctx, f)
			if errors.Is(err, bus.ErrInvalidData) { // the publisher's checks refused one: the user's to fix
				return &usageError{err: fmt.Errorf("redrive (%d moved before the refusal): %w", n, err)}
			}
			if err != nil {
				return g.redisError(fmt.Sprintf("redrive (%d moved before the error)", n), err)
			}
			_, err = fmt.Fprintf(g.io.out, "redrove %s\n", plural(int64(n), "dead letter"))
			return err
		}),
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.IDs, "id", nil, "dead-letter id to redrive (repeat, or comma-separate)")
	fl.StringVar(&f.Type, "type", "", "only dead letters of this event type")
	fl.StringVar(&f.Handler, "handler", "", "only dead letters of this handler")
	fl.BoolVar(&all, "all", false, "redrive every dead letter (asks for confirmation)")
	fl.BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

func newDLQPurgeCmd(g *globals) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "purge",
		Short: "Delete every dead letter (asks for confirmation)",
		Long: `Delete every dead letter. This cannot be undone: redrive what should be
handled again first. Asks for confirmation unless --yes is given; with no
terminal it requires --yes.`,
		Example: `  eventbus dlq purge
  eventbus dlq purge --yes`,
		Args: usageArgs(cobra.NoArgs),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if !yes && !g.io.inTTY {
				return usagef("refusing to purge the dead-letter queue without confirmation: stdin is not a terminal — pass --yes")
			}
			ctx := cmd.Context()
			b, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			q := b.DeadLetters()
			n, err := q.Len(ctx)
			if err != nil {
				return g.redisError("count dead letters", err)
			}
			if n == 0 {
				_, err := fmt.Fprintln(g.io.out, "no dead letters: nothing to purge")
				return err
			}
			if err := confirm(ctx, g, yes, fmt.Sprintf("Delete all %s? This cannot be undone.", plural(n, "dead letter"))); err != nil {
				return err
			}
			purged, err := q.Purge(ctx)
			if err != nil {
				return g.redisError("purge dead letters", err)
			}
			_, err = fmt.Fprintf(g.io.out, "purged %s\n", plural(purged, "dead letter"))
			return err
		}),
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// confirm asks question on stderr and reads the answer from stdin, unless
// yes. Anything but y/yes aborts.
func confirm(ctx context.Context, g *globals, yes bool, question string) error {
	if yes {
		return nil
	}
	if !g.io.inTTY {
		return usagef("refusing without confirmation: stdin is not a terminal — pass --yes")
	}
	fmt.Fprintf(g.io.err, "%s [y/N] ", question)
	var l inputLine
	select {
	case l = <-readLines(ctx, g.io.in):
	case <-ctx.Done():
		fmt.Fprintln(g.io.err)
		return &failure{err: errAborted}
	}
	if l.err != nil && len(l.line) == 0 {
		fmt.Fprintln(g.io.err)
		return &failure{err: errAborted}
	}
	switch strings.ToLower(strings.TrimSpace(string(l.line))) {
	case "y", "yes":
		return nil
	default:
		return &failure{err: errAborted}
	}
}

// plural returns "1 thing" or "n things".
func plural(n int64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return strconv.FormatInt(n, 10) + " " + thing + "s"
}
