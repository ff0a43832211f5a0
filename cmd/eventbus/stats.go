package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/shared-infra/eventbus/bus"
)

type statsOptions struct {
	json     bool
	interval time.Duration
}

func newStatsCmd(g *globals) *cobra.Command {
	var o statsOptions
	cmd := &cobra.Command{
		Use:   "stats [PATTERN]",
		Short: "Show each event type's handlers (consumer groups), lag and pending counts",
		Long: `Show, for every event type in the registry (or those matching PATTERN), the
stream's length and each consumer group reading it — one per handler, named
"<service>.<handler>" by the router — with:

  CONSUMERS  instances of the handler reading the stream
  PENDING    events delivered to the handler but not yet acked (in progress,
             or left by a crashed instance until another claims them)
  LAG        events not yet delivered to the handler ("?" when Redis cannot
             tell: XINFO GROUPS answers a null lag, e.g. after entries were
             deleted from the middle of the stream)
  LOST       events removed from the stream (a retention cap, or anyone's
             XTRIM) before the handler read them, as counted by the bus's
             retention passes; never silent

With --interval, the stream is sampled twice that far apart and the rates of
publishing (PUB/S) and of delivery to each handler (DELIV/S) are shown.

Streams are those of the type registry and any other stream under the prefix
(SCAN ... TYPE stream: written by a plain XADD, or after the registry was
lost). The dead-letter queue's length follows the table. Everything is read
from Redis (XINFO STREAM, XINFO GROUPS, the loss counters): no service needs
to be running.`,
		Example: `  eventbus stats
  eventbus stats 'photo.>' --interval 5s
  eventbus stats --json | jq '.streams[].groups[] | select(.lag > 1000)'`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			pattern := ">"
			if len(args) == 1 {
				pattern = args[0]
			}
			return runStats(cmd.Context(), g, o, pattern)
		}),
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print one JSON document")
	cmd.Flags().DurationVar(&o.interval, "interval", 0, "sample twice this far apart to show rates (e.g. 5s); 0 shows no rates")
	return cmd
}

// statsReport is what stats prints (--json is this, as JSON).
type statsReport struct {
	Time        time.Time     `json:"time"`
	Prefix      string        `json:"prefix"`
	Interval    float64       `json:"intervalSeconds,omitempty"`
	Streams     []streamStats `json:"streams"`
	DeadLetters int64         `json:"deadLetters"`
	Push        int64         `json:"pushStreamLength"`
}

type streamStats struct {
	Type            string       `json:"type"`
	Key             string       `json:"key"`
	Length          int64        `json:"length"`
	EntriesAdded    int64        `json:"entriesAdded"`
	LastID          string       `json:"lastId,omitempty"`
	PublishedPerSec *float64     `json:"publishedPerSec,omitempty"`
	Groups          []groupStats `json:"groups"`
	Missing         bool         `json:"missing,omitempty"` // no such stream (deleted, or never published)
	entriesRead     map[string]int64
}

type groupStats struct {
	Group           string   `json:"group"`
	Consumers       int64    `json:"consumers"`
	Pending         int64    `json:"pending"`
	Lag             *int64   `json:"lag"`  // null when Redis cannot tell
	Lost            int64    `json:"lost"` // removed before the group read them
	EntriesRead     int64    `json:"entriesRead"`
	LastDeliveredID string   `json:"lastDeliveredId"`
	DeliveredPerSec *float64 `json:"deliveredPerSec,omitempty"`
}

func runStats(ctx context.Context, g *globals, o statsOptions, pattern string) error {
	if err := bus.ValidatePattern(pattern); err != nil {
		return usagef("%w", err)
	}
	if o.interval < 0 {
		return usagef("invalid --interval %s: use a positive duration, or 0 for no rates", o.interval)
	}
	b, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	first, err := collectStats(ctx, b.Client(), b.Config(), pattern)
	if err != nil {
		return g.redisError("read stream stats", err)
	}
	rep := first
	if o.interval > 0 {
		start := time.Now()
		timer := time.NewTimer(o.interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return &failure{err: errors.New("interrupted")}
		case <-timer.C:
		}
		rep, err = collectStats(ctx, b.Client(), b.Config(), pattern)
		if err != nil {
			return g.redisError("read stream stats", err)
		}
		addRates(&rep, first, time.Since(start))
	}
	if o.json {
		enc := json.NewEncoder(g.io.out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printStats(g.io.out, rep)
}

// collectStats reads the registry, then XINFO STREAM and XINFO GROUPS of every
// matching stream and the dead-letter and push stream lengths, in one pipeline.
func collectStats(ctx context.Context, c redis.UniversalClient, cfg bus.Config, pattern string) (statsReport, error) {
	rep := statsReport{Time: time.Now().UTC(), Prefix: cfg.StreamPrefix, Streams: []streamStats{}}
	types, err := c.SMembers(ctx, cfg.RegistryKey()).Result()
	if err != nil {
		return rep, err
	}
	// Streams no publisher registered (raw XADD, a lost registry) too.
	if scanned, err := bus.ScanStreamTypes(ctx, c, cfg.StreamPrefix); err == nil {
		for _, t := range scanned {
			if !slices.Contains(types, t) {
				types = append(types, t)
			}
		}
	}
	types = slices.DeleteFunc(types, func(t string) bool { return bus.ValidateType(t) != nil || !bus.Match(pattern, t) })
	if !bus.IsPattern(pattern) && !slices.Contains(types, pattern) {
		types = append(types, pattern) // a plain type, registered or not
	}
	slices.Sort(types)

	pipe := c.Pipeline()
	infos := make([]*redis.XInfoStreamCmd, len(types))
	groups := make([]*redis.XInfoGroupsCmd, len(types))
	losses := make([]*redis.MapStringStringCmd, len(types))
	for i, t := range types {
		infos[i] = pipe.XInfoStream(ctx, cfg.StreamKey(t))
		groups[i] = pipe.XInfoGroups(ctx, cfg.StreamKey(t))
		losses[i] = pipe.HGetAll(ctx, cfg.LossKey(t))
	}
	dlq := pipe.XLen(ctx, cfg.DeadLetterKey())
	push := pipe.XLen(ctx, cfg.PushKey())
	_, _ = pipe.Exec(ctx) // errors are per command, below

	for i, t := range types {
		s := streamStats{Type: t, Key: cfg.StreamKey(t), Groups: []groupStats{}, entriesRead: map[string]int64{}}
		info, err := infos[i].Result()
		if bus.IsNoSuchKey(err) {
			s.Missing = true
			rep.Streams = append(rep.Streams, s)
			continue
		}
		if err != nil {
			return rep, err
		}
		s.Length, s.EntriesAdded, s.LastID = info.Length, info.EntriesAdded, info.LastGeneratedID
		gs, err := groups[i].Result()
		if err != nil && !bus.IsNoSuchKey(err) {
			return rep, err
		}
		for _, gr := range gs {
			st := groupStats{
				Group: gr.Name, Consumers: gr.Consumers, Pending: gr.Pending,
				EntriesRead: gr.EntriesRead, LastDeliveredID: gr.LastDeliveredID,
			}
			if gr.Lag >= 0 {
				lag := gr.Lag
				st.Lag = &lag
			}
			if n, err := strconv.ParseInt(losses[i].Val()[gr.Name], 10, 64); err == nil {
				st.Lost = n
			}
			s.Groups = append(s.Groups, st)
			s.entriesRead[gr.Name] = gr.EntriesRead
		}
		rep.Streams = append(rep.Streams, s)
	}
	if rep.DeadLetters, err = dlq.Result(); err != nil {
		return rep, err
	}
	if rep.Push, err = push.Result(); err != nil {
		return rep, err
	}
	return rep, nil
}

// addRates fills the per-second rates of rep from the earlier sample first.
func addRates(rep *statsReport, first statsReport, dt time.Duration) {
	secs := dt.Seconds()
	rep.Interval = secs
	before := map[string]streamStats{}
	for _, s := range first.Streams {
		before[s.Key] = s
	}
	for i := range rep.Streams {
		s := &rep.Streams[i]
		prev, ok := before[s.Key]
		if !ok || s.Missing || prev.Missing {
			continue
		}
		r := float64(s.EntriesAdded-prev.EntriesAdded) / secs
		s.PublishedPerSec = &r
		for j := range s.Groups {
			gr := &s.Groups[j]
			if read, ok := prev.entriesRead[gr.Group]; ok {
				r := float64(gr.EntriesRead-read) / secs
				gr.DeliveredPerSec = &r
			}
		}
	}
}

func printStats(w io.Writer, rep statsReport) error {
	rates := rep.Interval > 0
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	cols := []string{"TYPE", "LENGTH"}
	if rates {
		cols = append(cols, "PUB/S")
	}
	cols = append(cols, "GROUP", "CONSUMERS", "PENDING", "LAG", "LOST")
	if rates {
		cols = append(cols, "DELIV/S")
	}
	cols = append(cols, "LAST DELIVERED")
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, s := range rep.Streams {
		head := []string{s.Type, strconv.FormatInt(s.Length, 10)}
		if s.Missing {
			head[1] = "(no stream)"
		}
		if rates {
			head = append(head, rate(s.PublishedPerSec))
		}
		if len(s.Groups) == 0 {
			row := append(slices.Clone(head), "-", "-", "-", "-", "-")
			if rates {
				row = append(row, "-")
			}
			row = append(row, "-")
			fmt.Fprintln(tw, strings.Join(row, "\t"))
			continue
		}
		for _, gr := range s.Groups {
			lag := "?"
			if gr.Lag != nil {
				lag = strconv.FormatInt(*gr.Lag, 10)
			}
			row := append(slices.Clone(head), gr.Group, strconv.FormatInt(gr.Consumers, 10), strconv.FormatInt(gr.Pending, 10), lag, strconv.FormatInt(gr.Lost, 10))
			if rates {
				row = append(row, rate(gr.DeliveredPerSec))
			}
			row = append(row, gr.LastDeliveredID)
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
	}
	if err := tw.Flush(); err != nil {
		return &failure{err: fmt.Errorf("write output: %w", err)}
	}
	if len(rep.Streams) == 0 {
		fmt.Fprintf(w, "(no event types under prefix %q yet)\n", rep.Prefix)
	}
	fmt.Fprintf(w, "\ndead letters: %d", rep.DeadLetters)
	if rep.DeadLetters > 0 {
		fmt.Fprint(w, " (eventbus dlq list)")
	}
	fmt.Fprintf(w, "\npush stream:  %d entries\n", rep.Push)
	return nil
}

func rate(r *float64) string {
	if r == nil {
		return "-"
	}
	return strconv.FormatFloat(*r, 'f', 1, 64)
}
