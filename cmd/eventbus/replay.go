package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/shared-infra/eventbus/bus"
)

func newReplayCmd(g *globals) *cobra.Command {
	var (
		from, to    string
		types       []string
		dryRun, yes bool
		intoTemp    bool
	)
	cmd := &cobra.Command{
		Use:   "replay GROUP --from 2h|ID",
		Short: "Deliver a handler's events again from an id or a time",
		Long: `Move consumer group GROUP (a router handler's group is "<service>.<handler>")
back to --from on every stream where the group exists (or only the --type
streams), with XGROUP SETID: the handler's running instances then receive every
event from there on again. --from is a duration back from now (2h, 30m), an
RFC 3339 time or a stream entry id; the entry with that id is delivered again.
The group's pending list is left as it is. A time older than a trimmed stream's
oldest entry is refused: those events are gone.

--dry-run prints, per stream, how many events would be delivered again and
changes nothing. Otherwise it asks for confirmation; --yes skips it (required
when stdin is not a terminal).

--into-temp does not touch GROUP at all: it reads the --type streams from
--from to --to (default: now) through a temporary consumer group, removed
afterwards, and prints the events as JSON lines (as 'tail --json' does), for
a script or a one-off consumer to process. GROUP only names the replay then.`,
		Example: `  eventbus replay photo-worker.thumbnail --from 2h --dry-run
  eventbus replay photo-worker.thumbnail --from 2h --yes
  eventbus replay photo-worker.thumbnail --from 1700000000000-0 --type photo.uploaded
  eventbus replay audit --into-temp --type photo.uploaded --from 2h --to 1h`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			group := args[0]
			start, err := parseReplayTime("--from", from)
			if err != nil {
				return err
			}
			for _, t := range types {
				if err := bus.ValidateType(t); err != nil {
					return typeError(err)
				}
			}
			var end time.Time
			if to != "" {
				if !intoTemp {
					return usagef("--to applies to --into-temp only: a group reset replays up to the newest event")
				}
				e, err := parseReplayTime("--to", to)
				if err != nil {
					return err
				}
				if e.ID != "" {
					return usagef("invalid --to %q: use a duration back from now or an RFC 3339 time", to)
				}
				end = e.Time
			}
			if intoTemp && len(types) == 0 {
				return usagef("--into-temp needs --type: the event types to replay")
			}
			if !intoTemp && !dryRun && !yes && !g.io.inTTY {
				return usagef("refusing to reset group %s without confirmation: stdin is not a terminal — pass --yes (or --dry-run)", group)
			}
			ctx := cmd.Context()
			b, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			if intoTemp {
				_, err := b.ReplayInto(ctx, bus.ReplayRange{Types: types, From: start, To: end}, func(m *message.Message) error {
					e := decodeEntry(m.Metadata.Get(bus.MetaTopic), redis.XMessage{ID: m.Metadata.Get(bus.MetaStreamID), Values: messageValues(m)})
					if _, err := g.io.out.Write(append(e.JSON(), '\n')); err != nil {
						return &failure{err: fmt.Errorf("write output: %w", err)}
					}
					return nil
				})
				return replayError(g, err)
			}
			resets, err := b.ResetGroup(ctx, group, start, bus.ResetGroupOptions{Types: types, DryRun: true})
			if err != nil {
				return replayError(g, err)
			}
			var total int64
			tw := tabwriter.NewWriter(g.io.out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TYPE\tFROM\tNOW AT\tREDELIVER")
			for _, r := range resets {
				total += r.Redeliver
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", r.Type, r.StartID, r.Previous, r.Redeliver)
			}
			if err := tw.Flush(); err != nil {
				return &failure{err: fmt.Errorf("write output: %w", err)}
			}
			if dryRun {
				_, err := fmt.Fprintf(g.io.out, "\ndry run: would deliver %s again to %s\n", plural(total, "event"), group)
				return err
			}
			if err := confirm(ctx, g, yes, fmt.Sprintf("Deliver %s again to %s?", plural(total, "event"), group)); err != nil {
				return err
			}
			if _, err := b.ResetGroup(ctx, group, start, bus.ResetGroupOptions{Types: types}); err != nil {
				return replayError(g, err)
			}
			_, err = fmt.Fprintf(g.io.out, "\nreset %s on %s: %s will be delivered again\n", group, plural(int64(len(resets)), "stream"), plural(total, "event"))
			return err
		}),
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "where to start: a duration back from now (2h), an RFC 3339 time or an entry id (required)")
	f.StringVar(&to, "to", "", "with --into-temp: where to stop, a duration back from now or an RFC 3339 time (default now)")
	f.StringSliceVar(&types, "type", nil, "only these event types' streams (repeatable)")
	f.BoolVar(&dryRun, "dry-run", false, "print how many events would be delivered again; change nothing")
	f.BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	f.BoolVar(&intoTemp, "into-temp", false, "read the range through a temporary group and print it; leave GROUP alone")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}

// messageValues turns a decoded message back into stream fields for printing.
func messageValues(m *message.Message) map[string]any {
	v := make(map[string]any, len(m.Metadata)+1)
	for k, s := range m.Metadata {
		v[k] = s
	}
	v[bus.FieldData] = string(m.Payload)
	return v
}

func parseReplayTime(flag, s string) (bus.ReplayFrom, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return bus.ReplayFrom{Time: t}, nil
	}
	if s == "0" {
		return bus.ReplayFrom{ID: "0"}, nil
	}
	if entryIDRe.MatchString(s) {
		if _, _, err := bus.ParseStreamID(s); err != nil {
			return bus.ReplayFrom{}, usagef("invalid %s %q: %v", flag, s, err)
		}
		return bus.ReplayFrom{ID: s}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return bus.ReplayFrom{}, usagef("invalid %s %q: use a positive duration (30m, 2h), an RFC 3339 time or an entry id (1700000000000-0)", flag, s)
	}
	return bus.ReplayFrom{Time: time.Now().Add(-d)}, nil
}

func replayError(g *globals, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bus.ErrNoGroup), errors.Is(err, bus.ErrBeforeRetention):
		return &failure{err: err}
	case errors.Is(err, bus.ErrInvalidConfig), errors.Is(err, bus.ErrInvalidType):
		return usagef("%v", err)
	}
	var f *failure
	if errors.As(err, &f) {
		return err
	}
	return g.redisError("replay", err)
}
