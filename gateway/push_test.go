package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
)

const wait = 10 * time.Second

type payload struct {
	Name string `json:"name"`
}

func names(t *testing.T, ms []sseMsg) []string {
	t.Helper()
	var out []string
	for _, m := range ms {
		var ev struct {
			Data payload `json:"data"`
		}
		require.NoErrorf(t, json.Unmarshal([]byte(m.Data), &ev), "data %q", m.Data)
		out = append(out, ev.Data.Name)
	}
	return out
}

// Two users, three rooms and a broadcast: each browser gets its user's
// events, its permitted rooms' events and broadcasts, in publish order, and
// never another user's events or a forbidden room's.
func TestStreamAddressing(t *testing.T) {
	e := newEnv(t, envOpts{})
	// alice may join a and b, and asks for a, b and c (forbidden).
	alice := e.connect(e.token("alice", "a", "b"), "a,b, c", "")
	// bob may join b and c, and asks for c only.
	bob := e.connect(e.token("bob", "b", "c"), "c", "")

	hello, ok := alice.next(wait, true)
	require.True(t, ok)
	require.True(t, hello.IsComment)
	assert.Contains(t, hello.Comment, `rooms ["a","b"]`)
	assert.Contains(t, hello.Comment, `forbidden rooms (not joined) ["c"]`)
	waitFor(t, wait, "two streams", func() bool { return e.gw.Clients() == 2 })

	e.publish("chat.message", payload{"room-a"}, bus.WithRoom("a"))
	e.publish("chat.message", payload{"room-b"}, bus.WithRoom("b"))
	e.publish("chat.message", payload{"room-c"}, bus.WithRoom("c"))
	e.publish("user.notified", payload{"to-alice"}, bus.WithUser("alice"))
	e.publish("user.notified", payload{"to-bob"}, bus.WithUser("bob"))
	e.publish("chat.message", payload{"room-b-and-bob"}, bus.WithRoom("b"), bus.WithUser("bob"))
	e.publish("system.notice", payload{"everyone"}, bus.WithBroadcast())
	e.publish("audit.logged", payload{"nobody"}) // not addressed: never pushed
	e.publish("test.end", payload{"end"}, bus.WithBroadcast())

	assert.Equal(t, []string{"room-a", "room-b", "to-alice", "room-b-and-bob", "everyone"},
		names(t, alice.eventsUntil("test.end", wait)))
	assert.Equal(t, []string{"room-c", "to-bob", "room-b-and-bob", "everyone"},
		names(t, bob.eventsUntil("test.end", wait)))
}

// An SSE event: id is the push-stream entry id, event the type, data the
// event in CloudEvents JSON with every attribute and data as raw JSON (or
// data_base64 when it is not JSON).
func TestStreamEventFormat(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.connect(e.token("alice"), "", "")
	waitFor(t, wait, "the stream", func() bool { return e.gw.Clients() == 1 })

	id := e.publish("photo.uploaded", map[string]any{"photo": "p1", "n": 2},
		bus.WithUser("alice"), bus.WithSubject("p1"), bus.WithCorrelationID("corr-9"),
		bus.WithAttribute("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	bin := message.NewMessage(watermill.NewUUID(), []byte{0, 1, 2, 3})
	bin.Metadata.Set("user", "alice")
	bin.Metadata.Set("datacontenttype", "application/octet-stream")
	require.NoError(t, e.bus.Publisher().Publish("blob.stored", bin))

	m, ok := c.next(wait, false)
	require.True(t, ok)
	push := e.entries(e.pushKey())
	require.Len(t, push, 2)
	assert.Equal(t, push[0].ID, m.ID, "SSE id is the push-stream entry id")
	assert.Equal(t, "photo.uploaded", m.Event)
	ce := ceJSON(t, m)
	assert.Equal(t, id, ce["id"])
	assert.Equal(t, "1.0", ce["specversion"])
	assert.Equal(t, "gw-test", ce["source"])
	assert.Equal(t, "photo.uploaded", ce["type"])
	assert.Equal(t, "p1", ce["subject"])
	assert.Equal(t, "alice", ce["user"])
	assert.Equal(t, "corr-9", ce["correlationid"])
	assert.Equal(t, "application/json", ce["datacontenttype"])
	assert.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ce["traceparent"])
	assert.NotEmpty(t, ce["time"])
	assert.Equal(t, map[string]any{"photo": "p1", "n": float64(2)}, ce["data"])

	m, ok = c.next(wait, false)
	require.True(t, ok)
	assert.Equal(t, push[1].ID, m.ID)
	ce = ceJSON(t, m)
	assert.Equal(t, "AAECAw==", ce["data_base64"])
	assert.NotContains(t, ce, "data")
}

// A browser that reconnects with Last-Event-ID gets every event it missed,
// exactly once and in order, while events keep being published during the
// reconnect: no gap and no duplicate between the replay and the live feed.
func TestStreamResume(t *testing.T) {
	for _, via := range []string{"header", "query"} {
		t.Run(via, func(t *testing.T) {
			e := newEnv(t, envOpts{gw: func(c *gateway.Config) { c.ReplayPage = 7 }})
			tok := e.token("alice", "a")
			c := e.connect(tok, "a", "")
			waitFor(t, wait, "the stream", func() bool { return e.gw.Clients() == 1 })
			e.publish("n.e", payload{"0"}, bus.WithRoom("a"))
			e.publish("n.e", payload{"1"}, bus.WithRoom("a"))
			var last string
			for range 2 {
				m, ok := c.next(wait, false)
				require.True(t, ok)
				last = m.ID
			}
			c.close()
			waitFor(t, wait, "the stream to close", func() bool { return e.gw.Clients() == 0 })

			// Missed while away: 2..39 (and events for others).
			const total = 120
			for i := 2; i < 40; i++ {
				e.publish("n.e", payload{fmt.Sprint(i)}, bus.WithRoom("a"))
				e.publish("n.other", payload{"x"}, bus.WithRoom("z"))
			}
			// 40..119 are published while the browser reconnects.
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 40; i < total; i++ {
					e.publish("n.e", payload{fmt.Sprint(i)}, bus.WithRoom("a"))
				}
				e.publish("test.end", payload{"end"}, bus.WithRoom("a"))
			})
			var c2 *sseConn
			if via == "header" {
				c2 = e.connect(tok, "a", last)
			} else {
				c2, _ = e.dial(tok, "a", "", func(q url.Values, _ http.Header) { q.Set(gateway.LastEventIDParam, last) })
			}
			got := names(t, c2.eventsUntil("test.end", wait))
			wg.Wait()
			var want []string
			for i := 2; i < total; i++ {
				want = append(want, fmt.Sprint(i))
			}
			require.Equal(t, want, got)
		})
	}
}

// Resuming from a position the push stream no longer holds starts with an
// "event: gap" saying from when events were lost, then goes on.
func TestStreamGap(t *testing.T) {
	e := newEnv(t, envOpts{})
	tok := e.token("alice", "a")
	c := e.connect(tok, "a", "")
	waitFor(t, wait, "the stream", func() bool { return e.gw.Clients() == 1 })
	e.publish("n.e", payload{"0"}, bus.WithRoom("a"))
	m, ok := c.next(wait, false)
	require.True(t, ok)
	last := m.ID
	c.close()
	waitFor(t, wait, "the stream to close", func() bool { return e.gw.Clients() == 0 })

	for i := 1; i <= 5; i++ {
		e.publish("n.e", payload{fmt.Sprint(i)}, bus.WithRoom("a"))
	}
	ctx := context.Background()
	require.NoError(t, e.rdb.XTrimMaxLen(ctx, e.pushKey(), 2).Err()) // keeps 4 and 5
	push := e.entries(e.pushKey())
	require.Len(t, push, 2)

	c = e.connect(tok, "a", last)
	m, ok = c.next(wait, false)
	require.True(t, ok)
	require.Equal(t, gateway.GapEvent, m.Event)
	assert.Empty(t, m.ID, "a gap does not move Last-Event-ID")
	var gap gateway.Gap
	require.NoError(t, json.Unmarshal([]byte(m.Data), &gap))
	assert.Equal(t, last, gap.LastEventID)
	assert.Equal(t, push[0].ID, gap.OldestID)
	assert.WithinDuration(t, time.Now(), gap.Since, time.Minute)
	assert.Contains(t, gap.Message, "lost")

	e.publish("test.end", payload{"end"}, bus.WithRoom("a"))
	assert.Equal(t, []string{"4", "5"}, names(t, c.eventsUntil("test.end", wait)))
	c.close()

	t.Run("stream emptied", func(t *testing.T) {
		require.NoError(t, e.rdb.XTrimMaxLen(ctx, e.pushKey(), 0).Err())
		c := e.connect(tok, "a", last)
		m, ok := c.next(wait, false)
		require.True(t, ok)
		require.Equal(t, gateway.GapEvent, m.Event)
		var gap gateway.Gap
		require.NoError(t, json.Unmarshal([]byte(m.Data), &gap))
		assert.Empty(t, gap.OldestID)
		waitFor(t, wait, "the stream", func() bool { return e.gw.Clients() == 1 })
		e.publish("n.e", payload{"6"}, bus.WithRoom("a"))
		e.publish("test.end", payload{"end"}, bus.WithRoom("a"))
		assert.Equal(t, []string{"6"}, names(t, c.eventsUntil("test.end", wait)))
		c.close()
		waitFor(t, wait, "the stream to close", func() bool { return e.gw.Clients() == 0 })
	})

	t.Run("id ahead of the stream", func(t *testing.T) {
		c := e.connect(tok, "a", "18446744073709551615-0")
		m, ok := c.next(wait, false)
		require.True(t, ok)
		require.Equal(t, gateway.GapEvent, m.Event)
		var gap gateway.Gap
		require.NoError(t, json.Unmarshal([]byte(m.Data), &gap))
		assert.Contains(t, gap.Message, "ahead")
		waitFor(t, wait, "the stream", func() bool { return e.gw.Clients() == 1 })
		e.publish("n.e", payload{"7"}, bus.WithRoom("a"))
		e.publish("test.end", payload{"end"}, bus.WithRoom("a"))
		assert.Equal(t, []string{"7"}, names(t, c.eventsUntil("test.end", wait)))
		c.close()
		waitFor(t, wait, "the stream to close", func() bool { return e.gw.Clients() == 0 })
	})

	t.Run("no gap when nothing was trimmed", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		e.publish("n.e", payload{"first"}, bus.WithRoom("a"))
		c := e.connect(tok, "a", "0-0") // from the very beginning
		e.publish("test.end", payload{"end"}, bus.WithRoom("a"))
		got := c.eventsUntil("test.end", wait)
		assert.Equal(t, []string{"first"}, names(t, got), "no gap event first")
	})
}

// A browser that does not read is disconnected once its buffer overflows;
// one that reads gets every event, undelayed.
func TestStreamSlowClient(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.ClientBuffer = 64
		c.WriteTimeout = time.Second
	}})
	fast := e.connect(e.token("fast"), "", "")
	slow := e.connectPaused(e.token("slow"))
	waitFor(t, wait, "two streams", func() bool { return e.gw.Clients() == 2 })

	// Enough data to fill the slow browser's socket buffers (small: see
	// tinyWindowClient) and then its event buffer: 400 events of 8 KiB.
	const n = 400
	big := strings.Repeat("x", 8<<10)
	go func() {
		for i := range n {
			e.publish("big.event", map[string]any{"name": fmt.Sprint(i), "pad": big}, bus.WithBroadcast())
		}
	}()
	for i := range n {
		m, ok := fast.next(wait, false)
		require.Truef(t, ok, "fast browser: event %d missing", i)
		require.Equal(t, fmt.Sprint(i), names(t, []sseMsg{m})[0])
	}
	waitFor(t, wait, "the slow stream to be dropped", func() bool { return e.gw.Clients() == 1 })

	// The slow browser's stream has ended: reading it drains what was
	// buffered and stops short of n events.
	slow.start()
	got := 0
	for {
		m, ok := slow.next(wait, false)
		if !ok {
			break
		}
		if m.Event == "big.event" {
			got++
		}
	}
	assert.Less(t, got, n, "the slow browser was cut off")
	select {
	case <-slow.done:
	default:
		t.Fatal("the slow browser's stream did not end")
	}
}

// Heartbeats are comments, and they move an idle browser's Last-Event-ID
// past events meant for others, so a reconnect replays less.
func TestStreamHeartbeat(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) { c.HeartbeatInterval = 50 * time.Millisecond }})
	c := e.connect(e.token("alice"), "", "")
	waitFor(t, wait, "the stream", func() bool { return e.gw.Clients() == 1 })
	e.publish("other.event", payload{"for bob"}, bus.WithUser("bob"))
	push := e.entries(e.pushKey())
	require.Len(t, push, 1)

	var sawPing, sawID bool
	end := time.Now().Add(wait)
	for !(sawPing && sawID) && time.Now().Before(end) {
		m, ok := c.next(time.Until(end), true)
		require.True(t, ok)
		switch {
		case m.IsComment && m.Comment == "ping":
			sawPing = true
		case m.IDOnly:
			assert.Equal(t, push[0].ID, m.ID)
			sawID = true
		case m.IsRetry:
		case !m.IsComment:
			t.Fatalf("unexpected event %+v", m)
		}
	}
	assert.True(t, sawPing, "ping comment")
	assert.True(t, sawID, "id-only message at the stream's position")
}

// The stream endpoint's refusals, before anything is streamed.
func TestStreamErrors(t *testing.T) {
	e := newEnv(t, envOpts{})
	tests := []struct {
		name   string
		tok    string
		mutate func(url.Values, http.Header)
		status int
		field  string
	}{
		{"no token", "", nil, 401, ""},
		{"bad token", "not-a-jwt", nil, 401, ""},
		{"bad Last-Event-ID", e.token("alice"), func(_ url.Values, h http.Header) { h.Set("Last-Event-ID", "yesterday") }, 400, "Last-Event-ID"},
		{"bad lastEventId", e.token("alice"), func(q url.Values, _ http.Header) { q.Set(gateway.LastEventIDParam, "1-x") }, 400, gateway.LastEventIDParam},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, resp := e.dial(tt.tok, "", "", tt.mutate)
			require.Equal(t, tt.status, resp.StatusCode)
			b, _ := io.ReadAll(resp.Body)
			assert.Equal(t, tt.field, decodeError(t, b).Field)
		})
	}

	t.Run("bearer header", func(t *testing.T) {
		_, resp := e.dial("", "", "", func(_ url.Values, h http.Header) { h.Set("Authorization", "Bearer "+e.token("alice")) })
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	})

	t.Run("not running", func(t *testing.T) {
		e := newEnv(t, envOpts{noRun: true})
		_, resp := e.dial(e.token("alice"), "", "", nil)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	})
}

// Close ends every open stream, telling the browser to reconnect.
func TestGatewayClose(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.connect(e.token("alice"), "", "")
	waitFor(t, wait, "the stream", func() bool { return e.gw.Clients() == 1 })
	require.NoError(t, e.gw.Close())
	require.NoError(t, e.gw.Close(), "Close twice")
	var last sseMsg
	for {
		m, ok := c.next(wait, true)
		if !ok {
			break
		}
		last = m
	}
	assert.Contains(t, last.Comment, "shutting down")
	assert.ErrorIs(t, e.gw.Run(context.Background()), gateway.ErrGatewayClosed)
}
