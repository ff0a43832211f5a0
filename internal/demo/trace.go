package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/middleware"
	"github.com/shared-infra/eventbus/photo"
)

// tracer is the listener service's handler: it collects every photo event
// and writes each photo's trace once the photo is finished (completed or
// failed, and its owner notified), in upload order, so that the output reads
// photo by photo whatever order the streams deliver in.
type tracer struct {
	w       io.Writer
	uploads []upload
	done    chan struct{}

	mu     sync.Mutex
	start  time.Time
	photos map[string]*photoTrace
	seen   map[string]bool // event ids, to drop redeliveries
	next   int             // index in uploads of the next photo to print
	seq    int
	last   time.Time // time of the latest event seen
}

type photoTrace struct {
	events        []traceEvent
	completed     bool
	failed        bool
	notifications int
}

type traceEvent struct {
	at     time.Time
	seq    int
	typ    string
	detail string
}

func newTracer(w io.Writer, uploads []upload) *tracer {
	t := &tracer{w: w, uploads: uploads, done: make(chan struct{}), photos: map[string]*photoTrace{}, seen: map[string]bool{}}
	for _, u := range uploads {
		t.photos[u.id] = &photoTrace{}
	}
	return t
}

// begin sets the time offsets are counted from.
func (t *tracer) begin(at time.Time) {
	t.mu.Lock()
	t.start = at
	t.mu.Unlock()
}

func (p *photoTrace) finished() bool { return (p.completed || p.failed) && p.notifications > 0 }

// handle is a router.HandlerFunc for "photo.>".
func (t *tracer) handle(_ context.Context, msg *message.Message) error {
	ev, err := bus.Decode[json.RawMessage](msg)
	if err != nil {
		return middleware.Permanent(err)
	}
	id := ev.Subject
	if id == "" {
		var ref struct {
			PhotoID string `json:"photoId"`
		}
		_ = json.Unmarshal(ev.Data, &ref)
		id = ref.PhotoID
	}
	detail := describe(ev)

	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.photos[id]
	if p == nil || t.seen[ev.ID] {
		return nil // not one of ours, or a redelivery
	}
	t.seen[ev.ID] = true
	t.seq++
	p.events = append(p.events, traceEvent{at: ev.Time, seq: t.seq, typ: ev.Type, detail: detail})
	if ev.Time.After(t.last) {
		t.last = ev.Time
	}
	switch ev.Type {
	case photo.TypeProcessingCompleted:
		p.completed = true
	case photo.TypeProcessingFailed:
		p.failed = true
	case photo.TypeNotification:
		p.notifications++
	}
	for t.next < len(t.uploads) && t.photos[t.uploads[t.next].id].finished() {
		t.print(t.uploads[t.next], "")
		t.next++
		if t.next == len(t.uploads) {
			close(t.done)
		}
	}
	return nil
}

// finish writes the photos not written yet (after a timeout). Call it once
// the routers are closed.
func (t *tracer) finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for ; t.next < len(t.uploads); t.next++ {
		u := t.uploads[t.next]
		note := ""
		if !t.photos[u.id].finished() {
			note = " (unfinished)"
		}
		t.print(u, note)
	}
}

// print writes the trace of u. t.mu is held.
func (t *tracer) print(u upload, note string) {
	p := t.photos[u.id]
	slices.SortStableFunc(p.events, func(a, b traceEvent) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.seq - b.seq
	})
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s, %s, from %s%s\n", u.id, u.filename, byteSize(len(u.data)), u.owner, note)
	for _, e := range p.events {
		fmt.Fprintf(&b, "  +%.3fs  %-27s %s\n", e.at.Sub(t.start).Seconds(), e.typ, e.detail)
	}
	b.WriteByte('\n')
	_, _ = io.WriteString(t.w, b.String())
}

type traceStats struct {
	completed, failed, notifications int
	duration                         time.Duration
}

func (t *tracer) stats() traceStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	var s traceStats
	for _, p := range t.photos {
		if p.completed {
			s.completed++
		}
		if p.failed {
			s.failed++
		}
		s.notifications += p.notifications
	}
	if t.last.After(t.start) {
		s.duration = t.last.Sub(t.start)
	}
	return s
}

// unfinished says which photos are not finished and where each got to.
func (t *tracer) unfinished() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var parts []string
	for _, u := range t.uploads {
		p := t.photos[u.id]
		if p.finished() {
			continue
		}
		last := "nothing received"
		if n := len(p.events); n > 0 {
			last = "last event " + p.events[n-1].typ
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", u.id, last))
	}
	return fmt.Sprintf("%d of %d photos unfinished: %s", len(parts), len(t.uploads), strings.Join(parts, ", "))
}

// describe returns the details of ev worth a trace line.
func describe(ev bus.Event[json.RawMessage]) string {
	switch ev.Type {
	case photo.TypeUploaded:
		var u photo.Uploaded
		if json.Unmarshal(ev.Data, &u) == nil {
			return fmt.Sprintf("stored as %s (%s)", u.Key, u.ContentType)
		}
	case photo.TypeProcessingStarted:
		return "by the " + ev.Source + " service"
	case photo.TypeProcessingProgress:
		var p photo.ProcessingProgress
		if json.Unmarshal(ev.Data, &p) == nil {
			return fmt.Sprintf("%3d%% %s", p.Percent, p.Stage)
		}
	case photo.TypeProcessingCompleted:
		var c photo.ProcessingCompleted
		if json.Unmarshal(ev.Data, &c) == nil {
			thumbs := make([]string, len(c.Thumbnails))
			for i, th := range c.Thumbnails {
				thumbs[i] = fmt.Sprintf("%s %dx%d", th.Size, th.Width, th.Height)
			}
			return fmt.Sprintf("%dx%d %s → %s (%d ms)", c.Width, c.Height, c.Format, strings.Join(thumbs, ", "), c.DurationMs)
		}
	case photo.TypeProcessingFailed:
		var f photo.ProcessingFailed
		if json.Unmarshal(ev.Data, &f) == nil {
			return fmt.Sprintf("[%s] %s", f.Code, f.Reason)
		}
	case photo.TypeNotification:
		var n photo.Notification
		if json.Unmarshal(ev.Data, &n) == nil {
			return fmt.Sprintf("to user %s: %q", ev.User, n.Message)
		}
	}
	return ""
}

func byteSize(n int) string {
	if n < 1024 {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%.1f KB", float64(n)/1024)
}
