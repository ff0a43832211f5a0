package observe_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/middleware"
	"github.com/shared-infra/eventbus/observe"
	"github.com/shared-infra/eventbus/router"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(s.b.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		out = append(out, m)
	}
	return out
}

// Log lines about one event, and the field names that may carry each piece.
var (
	perEventMessages = map[string]bool{
		"Event dead-lettered": true, "Error occurred, retrying": true, "Handler returned error": true,
		"Received message": true, "Message acked": true, "Claimed a pending entry": true,
		"Cannot count the redelivery in Redis": true, "Publishing produced messages failed": true,
	}
	requiredFields = map[string][]string{
		"id":       {"event_id", "message_uuid"}, // the Watermill UUID is the event id
		"type":     {"event_type"},
		"handler":  {"handler", "handler_name"},
		"trace_id": {"trace_id"},
	}
	// knownGaps are the log lines about an event that lack some of the four
	// fields today, in code this package may not change; each has a fix
	// proposed in docs/observability.md ("Logging"). A gap not listed here
	// fails the test; a listed one that got fixed is only reported.
	knownGaps = map[string][]string{
		"Received message":       {"trace_id", "type"}, // watermill router, trace level
		"Message acked":          {"trace_id", "type"}, // watermill router, trace level
		"Handler returned error": {"trace_id", "type"}, // watermill router
	}
)

var traceIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// Every log line about an event carries its id, type, handler and trace id,
// with the gaps that other packages have today listed (and fixes proposed).
func TestLogLinesAboutAnEventCarryItsIDTypeHandlerAndTraceID(t *testing.T) {
	var buf syncBuffer
	logger := watermill.NewSlogLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: watermill.LevelTrace})))
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	b := newBus(t, func(c *bus.Config) { c.TracerProvider = tp })
	cfg := fastConfig()
	r, err := router.New(b, cfg, logger)
	require.NoError(t, err)
	_, _, _ = newObserver(t, r, observe.Config{}, logger)
	var calls atomic.Int64
	require.NoError(t, router.Handle(r, "logged", "log.job", func(ctx context.Context, ev bus.Event[job]) error {
		switch {
		case ev.Data.N == 1 && calls.Add(1) == 1:
			return errors.New("transient failure") // retried once, then fine
		case ev.Data.N == 2:
			return middleware.Permanent(errors.New("bad input")) // dead-lettered at once
		}
		return nil
	}))
	routertest.Start(t, r)
	ids := map[string]bool{}
	for i := range 3 {
		id, err := bus.Publish(context.Background(), r.Publisher(), "log.job", job{N: i})
		require.NoError(t, err)
		ids[id] = true
	}
	require.Eventually(t, func() bool { return r.Stats()["logged"].Acked == 3 }, 10*time.Second, 10*time.Millisecond)

	seen := map[string]bool{}
	for _, line := range buf.lines(t) {
		msg, _ := line["msg"].(string)
		if strings.HasPrefix(msg, "Panic recovered in handler") {
			msg = "Panic recovered in handler"
		}
		about := perEventMessages[msg]
		for _, v := range line {
			if s, ok := v.(string); ok && ids[s] {
				about = true
			}
		}
		if !about {
			continue
		}
		seen[msg] = true
		var missing []string
		for piece, keys := range requiredFields {
			found := false
			for _, k := range keys {
				if s, _ := line[k].(string); s != "" && (piece != "trace_id" || traceIDPattern.MatchString(s)) {
					found = true
				}
			}
			if !found {
				missing = append(missing, piece)
			}
		}
		sort.Strings(missing)
		known, isKnown := knownGaps[msg]
		switch {
		case len(missing) == 0 && isKnown:
			t.Logf("fixed: %q now carries id, type, handler and trace id; remove it from knownGaps", msg)
		case len(missing) == 0:
		case isKnown && subset(missing, known):
			t.Logf("known gap: %q lacks %v (fix proposed in docs/observability.md)", msg, missing)
		default:
			t.Errorf("log line %q about an event lacks %v: %v", msg, missing, line)
		}
	}
	assert.True(t, seen["Event dead-lettered"], "the dead-letter line is logged")
	assert.True(t, seen["Error occurred, retrying"], "the retry line is logged")
}

func subset(a, b []string) bool {
	in := map[string]bool{}
	for _, s := range b {
		in[s] = true
	}
	for _, s := range a {
		if !in[s] {
			return false
		}
	}
	return true
}
