package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/spf13/cobra"

	"github.com/shared-infra/eventbus/bus"
)

// publishBatch is the most events sent by one Publish call (one pipeline).
const publishBatch = 100

// maxLine is the longest stdin line accepted: the bus's default event size
// limit plus room for attributes.
const maxLine = bus.DefaultMaxEventSize + 64<<10

type publishOptions struct {
	room, user, subject, contentType, id string
	broadcast                            bool
	delay                                time.Duration
	at                                   string
	deliverAt                            time.Time // from delay or at
}

func newPublishCmd(g *globals) *cobra.Command {
	var o publishOptions
	cmd := &cobra.Command{
		Use:   "publish TYPE [DATA|-]",
		Short: "Publish events (one, or one per JSON line of stdin)",
		Long: `Publish an event of type TYPE with DATA (JSON by default) and print its id.

With DATA '-', or with no DATA when stdin is not a terminal, every line of stdin
is the data of one event (JSON lines; blank lines are skipped). Events are sent
in batches of up to 100 per round trip and their ids printed one per line, in
input order. A line that is not valid JSON stops the command with exit code 2;
the events of the lines before it are published (their ids printed).

With no DATA on a terminal, one event with no data is published.

--room, --user and --broadcast address the event to browsers (the gateway
delivers it over server-sent events); --subject sets the CloudEvents subject.

--delay 10m or --at 2026-01-02T15:04:05Z schedules the event instead: it is
validated now and written to its stream when due by a running bus (see
'eventbus scheduled list').`,
		Example: `  eventbus publish photo.uploaded '{"photoId":"p-42","size":1024}' --subject p-42
  eventbus publish photo.notification '{"text":"done"}' --user u-7
  eventbus publish deploy.finished '{}' --broadcast
  eventbus publish photo.uploaded '{"photoId":"p-42"}' --id 8f14e45f-ceea-467f-a0e6-3b1f0c9a1e2d

  # one event per line, batched
  printf '{"n":1}\n{"n":2}\n' | eventbus publish test.counter
  eventbus publish photo.uploaded - < uploads.jsonl

  # data that is not JSON
  eventbus publish log.line 'disk full' --content-type text/plain

  # deliver later
  eventbus publish photo.retry '{"photoId":"p-42"}' --delay 10m
  eventbus publish user.reminder '{"userId":"u-7"}' --at 2026-01-02T09:00:00Z`,
		Args: usageArgs(cobra.RangeArgs(1, 2)),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return runPublish(cmd.Context(), g, o, args)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.room, "room", "", "address the event to the browsers in this room")
	f.StringVar(&o.user, "user", "", "address the event to this user's browsers")
	f.BoolVar(&o.broadcast, "broadcast", false, "address the event to every connected browser")
	f.StringVar(&o.subject, "subject", "", "CloudEvents subject, e.g. the photo id")
	f.StringVar(&o.contentType, "content-type", "", "datacontenttype of the data (default application/json; JSON types are checked)")
	f.StringVar(&o.id, "id", "", "event id (default a new UUID); only for a single event")
	f.DurationVar(&o.delay, "delay", 0, "deliver the event(s) this long from now (e.g. 10m)")
	f.StringVar(&o.at, "at", "", "deliver the event(s) at this RFC 3339 time")
	return cmd
}

func runPublish(ctx context.Context, g *globals, o publishOptions, args []string) error {
	typ := args[0]
	if err := bus.ValidateType(typ); err != nil {
		return typeError(err)
	}
	switch {
	case o.delay != 0 && o.at != "":
		return usagef("set only one of --delay and --at")
	case o.delay < 0:
		return usagef("invalid --delay %s: use a positive duration", o.delay)
	case o.delay > 0:
		o.deliverAt = time.Now().Add(o.delay)
	case o.at != "":
		t, err := time.Parse(time.RFC3339Nano, o.at)
		if err != nil {
			return usagef("invalid --at %q: use an RFC 3339 time such as 2026-01-02T15:04:05Z", o.at)
		}
		o.deliverAt = t
	}
	contentType := o.contentType
	if contentType == "" {
		contentType = bus.DefaultContentType
	}
	checkJSON := bus.IsJSONContentType(contentType)
	fromStdin := (len(args) == 2 && args[1] == "-") || (len(args) == 1 && !g.io.inTTY)
	if fromStdin && o.id != "" {
		return usagef("--id sets the id of one event; it cannot be used when reading events from stdin")
	}
	var single []byte
	if !fromStdin && len(args) == 2 {
		single = []byte(args[1])
		if checkJSON && len(single) > 0 {
			if err := validJSON(single); err != nil {
				return usagef("DATA is not valid JSON: %v — quote it for the shell, e.g. '{\"photoId\":\"p-42\"}', or set --content-type for other data", err)
			}
		}
	}
	b, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	p := &publisher{ctx: ctx, g: g, pub: b.Publisher(), typ: typ, opts: o, out: g.io.out, window: b.Config().DedupWindow}
	if !fromStdin {
		return p.publish([]*message.Message{p.message(single)})
	}
	n, err := p.fromReader(g.io.in, checkJSON)
	if err == nil && n == 0 && len(args) == 1 {
		fmt.Fprintln(g.io.err, "eventbus: stdin was empty: nothing published (pass DATA, e.g. '{}', to publish one event)")
	}
	return err
}

// publisher publishes events of one type with the same options.
type publisher struct {
	ctx  context.Context
	g    *globals
	pub  message.Publisher
	typ  string
	opts publishOptions
	out  io.Writer
	sent int
	// window is the publisher's deduplication window (Config.DedupWindow).
	window time.Duration
}

func (p *publisher) message(data []byte) *message.Message {
	id := p.opts.id
	if id == "" {
		id = watermill.NewUUID()
	}
	msg := message.NewMessage(id, data)
	set := func(k, v string) {
		if v != "" {
			msg.Metadata.Set(k, v)
		}
	}
	set(bus.AttrSubject, p.opts.subject)
	set(bus.AttrRoom, p.opts.room)
	set(bus.AttrUser, p.opts.user)
	set(bus.AttrDataContentType, p.opts.contentType)
	if p.opts.broadcast {
		msg.Metadata.Set(bus.AttrBroadcast, "true")
	}
	if !p.opts.deliverAt.IsZero() {
		bus.WithDeliverAt(p.opts.deliverAt)(msg)
	}
	return msg
}

// publish sends msgs in one Publish call and prints their ids.
func (p *publisher) publish(msgs []*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	msgs[0].SetContext(p.ctx)
	if err := p.pub.Publish(p.typ, msgs...); err != nil {
		if p.ctx.Err() != nil {
			return &failure{err: fmt.Errorf("interrupted: %d event(s) published before", p.sent)}
		}
		if classified := classify(err); exitCode(classified) == exitUsage {
			return classified
		}
		what := fmt.Sprintf("publish %d event(s) of type %s (%d published before)", len(msgs), p.typ, p.sent)
		return p.g.redisError(what, err)
	}
	var buf bytes.Buffer
	for _, m := range msgs {
		buf.WriteString(m.UUID)
		buf.WriteByte('\n')
		if entry, dup := bus.IsDuplicate(m); dup {
			// Never silent: the id is printed (the event is published), and
			// stderr says it was not written again.
			fmt.Fprintf(p.g.io.err, "eventbus: event %s is a duplicate: it was already written to %s as entry %s within the deduplication window (%s); not written again\n",
				m.UUID, p.typ, entry, p.window)
		}
	}
	p.sent += len(msgs)
	if _, err := p.out.Write(buf.Bytes()); err != nil {
		return &failure{err: fmt.Errorf("write ids: %w", err)}
	}
	return nil
}

// fromReader publishes one event per non-blank line of r, in batches of up
// to publishBatch. A batch is also sent whenever no more input is buffered,
// so events from a slow producer (a pipe from tail -f) go out at once.
func (p *publisher) fromReader(r io.Reader, checkJSON bool) (int, error) {
	lines := readLines(p.ctx, r)
	batch := make([]*message.Message, 0, publishBatch)
	flush := func() error {
		err := p.publish(batch)
		batch = batch[:0]
		return err
	}
	for lineNo := 1; ; lineNo++ {
		var l inputLine
		select {
		case <-p.ctx.Done():
			return p.sent, &failure{err: fmt.Errorf("interrupted: %d event(s) published", p.sent)}
		case l = <-lines:
		}
		if l.err != nil && !errors.Is(l.err, io.EOF) {
			if ferr := flush(); ferr != nil {
				return p.sent, ferr
			}
			if errors.Is(l.err, errLineTooLong) {
				return p.sent, usagef("stdin line %d is longer than %d bytes — one event per line; %d event(s) before it were published", lineNo, maxLine, p.sent)
			}
			return p.sent, &failure{err: fmt.Errorf("read stdin: %w", l.err)}
		}
		if data := bytes.TrimSpace(l.line); len(data) > 0 {
			if checkJSON {
				if jerr := validJSON(data); jerr != nil {
					if ferr := flush(); ferr != nil {
						return p.sent, ferr
					}
					return p.sent, usagef("stdin line %d is not valid JSON: %v — %d event(s) before it were published; fix the line and send the rest again", lineNo, jerr, p.sent)
				}
			}
			batch = append(batch, p.message(data))
		}
		if len(batch) == publishBatch || (len(batch) > 0 && (!l.more || l.err != nil)) {
			if ferr := flush(); ferr != nil {
				return p.sent, ferr
			}
		}
		if l.err != nil { // io.EOF
			return p.sent, nil
		}
	}
}

// inputLine is one line of stdin; more tells whether more input was already
// buffered when it was read (if not, the next read may block).
type inputLine struct {
	line []byte
	more bool
	err  error
}

// readLines reads r line by line on its own goroutine, so that reading a
// terminal or a quiet pipe never keeps an interrupt from being noticed. The
// goroutine ends at the first error (io.EOF included) or when ctx is done.
func readLines(ctx context.Context, r io.Reader) <-chan inputLine {
	ch := make(chan inputLine)
	go func() {
		br := bufio.NewReaderSize(r, 64<<10)
		for {
			line, err := readLine(br)
			select {
			case ch <- inputLine{line: line, more: br.Buffered() > 0, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line of br without its end of line; io.EOF with
// the last line if it has no newline.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, errLineTooLong
		}
		switch {
		case err == nil:
			return bytes.TrimRight(line, "\r\n"), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return line, err
		}
	}
}

// validJSON reports where data stops being JSON.
func validJSON(data []byte) error {
	if json.Valid(data) {
		return nil
	}
	var v json.RawMessage
	err := json.Unmarshal(data, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%s (at byte %d of %q)", se.Error(), se.Offset, truncate(string(data), 40))
	}
	if err == nil {
		err = errors.New("not JSON")
	}
	return err
}

// truncate shortens s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return strings.TrimSpace(string(r[:n])) + "…"
}

// typeError is the usage error for an invalid event type: the bus's message
// (what is wrong), with the rule if the message does not state it.
func typeError(err error) error {
	if strings.Contains(err.Error(), "[a-z0-9_-]") {
		return usagef("%w (e.g. photo.uploaded)", err)
	}
	return usagef("%w — an event type is dot-separated tokens of [a-z0-9_-], 1–255 bytes, e.g. photo.uploaded", err)
}
