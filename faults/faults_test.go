//go:build faults

package faults

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
)

// EnvReport names the file the results table is written to (markdown rows).
const EnvReport = "FAULTS_REPORT"

// TestMain runs the suite, then prints the results table and, if
// FAULTS_REPORT is set, writes it to that file.
func TestMain(m *testing.M) {
	if os.Getenv(envHelper) != "" {
		// A child process started by a test (see TestHelperProcess): no table.
		os.Exit(m.Run())
	}
	code := m.Run()
	table := results.markdown()
	if table != "" {
		fmt.Print("\nfault-injection results\n\n" + table)
		if path := os.Getenv(EnvReport); path != "" {
			if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
				fmt.Fprintf(os.Stderr, "faults: writing %s=%s: %v\n", EnvReport, path, err)
				if code == 0 {
					code = 1
				}
			}
		}
	}
	os.Exit(code)
}

// row is one line of the results table.
type row struct {
	Fault      string
	Published  int    // Publish calls (or raw XADDs) made
	Acked      int    // of those, how many returned no error: the events that must be handled
	Handled    int    // distinct events the handlers saw (ids, for poison entries stream ids)
	Lost       int    // acked to the publisher but never handled
	Duplicated int    // deliveries beyond the first of an event
	Recovery   string // see each test
	Notes      string
	Result     string // PASS or FAIL
}

type resultTable struct {
	mu   sync.Mutex
	rows []row
}

var results resultTable

func (r *resultTable) add(x row) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, x)
}

const tableHeader = "| fault | published | acked to publisher | handled | lost | duplicated | recovery | result | notes |\n" +
	"|---|---:|---:|---:|---:|---:|---:|---|---|\n"

func (x row) markdown() string {
	return fmt.Sprintf("| %s | %d | %d | %d | %d | %d | %s | %s | %s |\n",
		x.Fault, x.Published, x.Acked, x.Handled, x.Lost, x.Duplicated, x.Recovery, x.Result, x.Notes)
}

func (r *resultTable) markdown() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.rows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(tableHeader)
	for _, x := range r.rows {
		b.WriteString(x.markdown())
	}
	return b.String()
}

// newRow returns the row a test fills in; it is logged and added to the table
// when the test ends, with the test's result.
func newRow(t *testing.T, fault string) *row {
	x := &row{Fault: fault, Recovery: "–"}
	t.Cleanup(func() {
		x.Result = "PASS"
		if t.Failed() {
			x.Result = "FAIL"
		}
		t.Log("result row:\n" + tableHeader + x.markdown())
		results.add(*x)
	})
	return x
}

// fmtDur formats a measured duration for the table.
func fmtDur(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return d.Round(time.Millisecond).String()
}

// tracker counts what was published and what was handled, by event id.
type tracker struct {
	mu        sync.Mutex
	attempts  int
	acked     map[string]time.Time // event id -> when Publish returned nil
	failed    map[string]error     // event id -> the error Publish returned
	handled   map[string]int       // event id -> deliveries to a handler
	handledAt []time.Time          // every delivery, in order
	byStream  map[string]time.Time // stream id -> first handled
	changed   chan struct{}        // closed and replaced on every handled event
}

func newTracker() *tracker {
	return &tracker{
		acked:    map[string]time.Time{},
		failed:   map[string]error{},
		handled:  map[string]int{},
		byStream: map[string]time.Time{},
		changed:  make(chan struct{}),
	}
}

func (tr *tracker) published(id string, err error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.attempts++
	if err != nil {
		tr.failed[id] = err
		return
	}
	tr.acked[id] = time.Now()
}

// handle records one delivery of event id (stream entry streamID) to a handler.
func (tr *tracker) handle(id, streamID string) {
	now := time.Now()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.handled[id]++
	tr.handledAt = append(tr.handledAt, now)
	if _, ok := tr.byStream[streamID]; !ok && streamID != "" {
		tr.byStream[streamID] = now
	}
	close(tr.changed)
	tr.changed = make(chan struct{})
}

// missing returns the acked events not handled yet.
func (tr *tracker) missing() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for id := range tr.acked {
		if tr.handled[id] == 0 {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// waitAllHandled waits until every acked event was handled, or timeout.
func (tr *tracker) waitAllHandled(timeout time.Duration) []string {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		tr.mu.Lock()
		ch := tr.changed
		tr.mu.Unlock()
		missing := tr.missing()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-deadline.C:
			return missing
		}
	}
}

// firstHandledAfter returns how long after t0 the first delivery came, or -1.
func (tr *tracker) firstHandledAfter(t0 time.Time) time.Duration {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, at := range tr.handledAt {
		if at.After(t0) {
			return at.Sub(t0)
		}
	}
	return -1
}

// firstAckedAfter returns how long after t0 the first successful Publish returned, or -1.
func (tr *tracker) firstAckedAfter(t0 time.Time) time.Duration {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	best := time.Duration(-1)
	for _, at := range tr.acked {
		if at.After(t0) && (best < 0 || at.Sub(t0) < best) {
			best = at.Sub(t0)
		}
	}
	return best
}

// stats returns the distinct events handled, the deliveries beyond the first,
// and the events whose Publish failed but that were handled anyway.
func (tr *tracker) stats() (handled, duplicated, failedButHandled int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for id, n := range tr.handled {
		handled++
		duplicated += n - 1
		if _, ok := tr.failed[id]; ok {
			failedButHandled++
		}
	}
	return
}

// fill copies the tracker's counts into x.
func (tr *tracker) fill(x *row) (lost []string) {
	lost = tr.missing()
	handled, dup, _ := tr.stats()
	tr.mu.Lock()
	x.Published, x.Acked = tr.attempts, len(tr.acked)
	tr.mu.Unlock()
	x.Handled, x.Lost, x.Duplicated = handled, len(lost), dup
	return lost
}

// consume hands every message of ch to the tracker (after delay) and acks it,
// until ch closes.
func consume(ch <-chan *message.Message, tr *tracker, delay time.Duration) {
	for msg := range ch {
		tr.handle(msg.UUID, msg.Metadata.Get(bus.MetaStreamID))
		if delay > 0 {
			time.Sleep(delay) // the handler's work
		}
		msg.Ack()
	}
}

// publishLoop publishes one event every interval until ctx is done, each
// Publish bounded by callTimeout, and records the outcome in tr.
func publishLoop(ctx context.Context, pub message.Publisher, topic string, tr *tracker, interval, callTimeout time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		msg := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"n":%d}`, i))
		cctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		msg.SetContext(cctx)
		err := pub.Publish(topic, msg)
		cancel()
		tr.published(msg.UUID, err)
	}
}

// waitNoPending waits until the group has no pending entry on key.
func waitNoPending(t *testing.T, c redis.UniversalClient, key, group string, timeout time.Duration) int64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p, err := c.XPending(context.Background(), key, group).Result()
		if err == nil && p.Count == 0 {
			return 0
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Logf("XPENDING %s %s: %v", key, group, err)
				return -1
			}
			return p.Count
		}
		time.Sleep(50 * time.Millisecond)
	}
}
