package middleware_test

import (
	"context"
	"errors"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/middleware"
)

func event(typ string, data string) *message.Message {
	m := message.NewMessage("id-1", []byte(data))
	for k, v := range map[string]string{bus.AttrID: "id-1", bus.AttrType: typ, bus.AttrSource: "t", bus.AttrSpecVersion: "1.0"} {
		m.Metadata.Set(k, v)
	}
	m.SetContext(context.Background())
	return m
}

func TestTimeoutFailsAtTheDeadlineEvenIfTheHandlerIgnoresCtx(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	h := middleware.Timeout(50 * time.Millisecond)(func(msg *message.Message) ([]*message.Message, error) {
		<-release
		return nil, nil
	})
	start := time.Now()
	_, err := h(event("a.b", "{}"))
	require.ErrorIs(t, err, middleware.ErrTimeout)
	assert.Less(t, time.Since(start), 5*time.Second, "returned at the deadline, not when the handler did")
}

func TestTimeoutCancelsTheHandlerContext(t *testing.T) {
	h := middleware.Timeout(20 * time.Millisecond)(func(msg *message.Message) ([]*message.Message, error) {
		<-msg.Context().Done()
		return nil, msg.Context().Err()
	})
	_, err := h(event("a.b", "{}"))
	require.Error(t, err)
}

func TestRetryCountsAttemptsAndSkipsPermanentErrors(t *testing.T) {
	var calls atomic.Int64
	var retries []int
	r := middleware.Retry{MaxAttempts: 4, InitialInterval: time.Millisecond, MaxInterval: 2 * time.Millisecond,
		OnRetry: func(_ *message.Message, attempt int, _ error) { retries = append(retries, attempt) }}
	msg := event("a.b", "{}")
	_, err := r.Middleware(func(msg *message.Message) ([]*message.Message, error) {
		calls.Add(1)
		return nil, errors.New("transient")
	})(msg)
	require.Error(t, err)
	assert.EqualValues(t, 4, calls.Load())
	assert.Equal(t, 4, middleware.Attempts(msg))
	assert.Equal(t, []int{1, 2, 3}, retries)

	calls.Store(0)
	msg = event("a.b", "{}")
	_, err = r.Middleware(func(msg *message.Message) ([]*message.Message, error) {
		calls.Add(1)
		return nil, middleware.Permanent(errors.New("bad input"))
	})(msg)
	require.Error(t, err)
	assert.True(t, middleware.IsPermanent(err))
	assert.EqualValues(t, 1, calls.Load(), "a permanent error is not retried")
}

// The first attempt runs outside Watermill's Retry; these pin down that
// the attempts a handler sees are the same as if Watermill made them all.
func TestRetryFirstAttemptAndRecovery(t *testing.T) {
	r := middleware.Retry{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: 2 * time.Millisecond}

	var seen []int
	msg := event("a.b", "{}")
	out, err := r.Middleware(func(m *message.Message) ([]*message.Message, error) {
		seen = append(seen, middleware.Attempts(m))
		return []*message.Message{message.NewMessage("produced", nil)}, nil
	})(msg)
	require.NoError(t, err)
	assert.Equal(t, []int{1}, seen, "a success is one attempt")
	require.Len(t, out, 1, "produced messages are returned")

	seen = nil
	var retried []int
	r.OnRetry = func(_ *message.Message, attempt int, _ error) { retried = append(retried, attempt) }
	_, err = r.Middleware(func(m *message.Message) ([]*message.Message, error) {
		seen = append(seen, middleware.Attempts(m))
		if len(seen) < 3 {
			return nil, errors.New("transient")
		}
		return nil, nil
	})(event("a.b", "{}"))
	require.NoError(t, err, "the third attempt succeeds")
	assert.Equal(t, []int{1, 2, 3}, seen)
	assert.Equal(t, []int{1, 2}, retried)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	msg = event("a.b", "{}")
	msg.SetContext(ctx)
	called := false
	_, err = r.Middleware(func(*message.Message) ([]*message.Message, error) {
		called = true
		return nil, nil
	})(msg)
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, called, "a handler whose context is already done is not called")
}

func TestValidator(t *testing.T) {
	ctx := context.Background()
	b, err := bus.New(bus.Config{ServiceName: "t", Client: redistest.Client(t), StreamPrefix: redistest.Prefix(t)}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	v1, err := b.Schemas().Put(ctx, "photo.uploaded", []byte(`{"type":"object","required":["photoId"],"properties":{"photoId":{"type":"string"}}}`))
	require.NoError(t, err)
	v := middleware.NewValidator(b.Schemas())
	withSchema := func(m *message.Message, uri string) *message.Message {
		m.Metadata.Set(bus.AttrDataSchema, uri)
		return m
	}

	assert.NoError(t, v.Validate(event("photo.uploaded", `{"photoId":"p"}`)), "no dataschema: the latest version")
	assert.NoError(t, v.Validate(withSchema(event("photo.uploaded", `{"photoId":"p"}`), v1.URI)))
	assert.NoError(t, v.Validate(event("photo.other", `{"anything":1}`)), "no schema, no data check")

	err = v.Validate(event("photo.uploaded", `{"size":1}`))
	require.ErrorIs(t, err, middleware.ErrInvalidEvent)
	require.ErrorIs(t, err, bus.ErrSchemaViolation)
	assert.Contains(t, err.Error(), "photoId")

	err = v.Validate(withSchema(event("photo.uploaded", `{"photoId":"p"}`), bus.SchemaURI("photo.uploaded", 7)))
	require.ErrorIs(t, err, middleware.ErrInvalidEvent)
	require.ErrorIs(t, err, bus.ErrUnknownSchema, "a version the registry does not hold")
	assert.Contains(t, err.Error(), "version 7")

	m := event("photo.uploaded", `{"photoId":"p"}`)
	delete(m.Metadata, bus.AttrSource)
	assert.ErrorContains(t, v.Validate(m), `attribute "source" is missing`)

	bad := message.NewMessage("x", nil)
	bad.Metadata.Set(bus.MetaMalformed, "missing required attribute(s) id")
	assert.ErrorContains(t, v.Validate(bad), "malformed")

	var called bool
	_, err = v.Middleware(func(*message.Message) ([]*message.Message, error) { called = true; return nil, nil })(event("photo.uploaded", `{}`))
	assert.True(t, middleware.IsPermanent(err))
	assert.False(t, called)

	assert.NoError(t, middleware.NewValidator(nil).Validate(event("photo.uploaded", `{}`)), "no registry: no data check")
}

func TestMaxDeliveries(t *testing.T) {
	h := middleware.MaxDeliveries(3)(func(*message.Message) ([]*message.Message, error) { return nil, nil })
	m := event("a.b", "{}")
	m.Metadata.Set(bus.MetaDelivery, "3")
	_, err := h(m)
	assert.NoError(t, err)
	m.Metadata.Set(bus.MetaDelivery, "4")
	_, err = h(m)
	assert.ErrorIs(t, err, middleware.ErrTooManyDeliveries)
	assert.True(t, middleware.IsPermanent(err))
}

func TestStatsCountsOutcomesAndQuantiles(t *testing.T) {
	st := middleware.NewStats()
	ok := st.Middleware("h")(st.AttemptMiddleware("h")(func(m *message.Message) ([]*message.Message, error) {
		if strings.Contains(string(m.Payload), "fail") {
			return nil, errors.New("x")
		}
		if strings.Contains(string(m.Payload), "skip") {
			return nil, middleware.ErrFiltered
		}
		time.Sleep(2 * time.Millisecond)
		return nil, nil
	}))
	for _, p := range []string{"a", "b", "fail", "skip"} {
		_, _ = ok(event("a.b", p))
	}
	s := st.Snapshot()["h"]
	assert.EqualValues(t, 4, s.Received)
	assert.EqualValues(t, 3, s.Acked)
	assert.EqualValues(t, 1, s.Nacked)
	assert.EqualValues(t, 1, s.Failed)
	assert.EqualValues(t, 1, s.Filtered)
	assert.Zero(t, s.InFlight)
	assert.EqualValues(t, 4, s.Processing.Count)
	assert.GreaterOrEqual(t, s.Processing.P99, 2*time.Millisecond)
	assert.LessOrEqual(t, s.Processing.P50, s.Processing.P99)
	assert.LessOrEqual(t, s.Processing.P99, s.Processing.Max)
}

// goroutinesCreated is the number of goroutines this process has started.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// The attempts run on goroutines Timeout keeps: one after the other, they
// reuse one instead of starting one each.
func TestTimeoutReusesItsAttemptGoroutines(t *testing.T) {
	h := middleware.Timeout(time.Minute)(func(*message.Message) ([]*message.Message, error) { return nil, nil })
	_, err := h(event("a.b", "{}")) // starts the worker
	require.NoError(t, err)
	g0 := goroutinesCreated()
	for range 200 {
		_, err := h(event("a.b", "{}"))
		require.NoError(t, err)
	}
	assert.Less(t, goroutinesCreated()-g0, uint64(20), "200 attempts in a row do not start a goroutine each")
}

// A handler stuck past its deadline keeps its goroutine; the next attempt
// gets another one and is not held up.
func TestTimeoutAttemptAfterAStuckOneRuns(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var stuck atomic.Bool
	stuck.Store(true)
	h := middleware.Timeout(30 * time.Millisecond)(func(*message.Message) ([]*message.Message, error) {
		if stuck.Swap(false) {
			<-release
		}
		return nil, nil
	})
	_, err := h(event("a.b", "{}"))
	require.ErrorIs(t, err, middleware.ErrTimeout)
	_, err = h(event("a.b", "{}"))
	require.NoError(t, err, "the second attempt runs although the first still holds its goroutine")
}

func TestTimeoutRecoversPanics(t *testing.T) {
	for _, d := range []time.Duration{time.Minute, -1} {
		h := middleware.Timeout(d)(func(*message.Message) ([]*message.Message, error) { panic("boom") })
		_, err := h(event("a.b", "{}"))
		require.Error(t, err, "timeout %s", d)
		assert.Equal(t, "panic in handler: boom", err.Error(), "timeout %s", d)
	}
}

func TestRetryStopsWaitingWhenTheContextEnds(t *testing.T) {
	r := middleware.Retry{MaxAttempts: 5, InitialInterval: time.Hour, MaxInterval: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	msg := event("a.b", "{}")
	msg.SetContext(ctx)
	var calls atomic.Int64
	_, err := r.Middleware(func(*message.Message) ([]*message.Message, error) {
		calls.Add(1)
		cancel() // the router closes during the first attempt
		return nil, errors.New("transient")
	})(msg)
	require.ErrorIs(t, err, context.Canceled, "the wait for the retry ends with the context")
	assert.EqualValues(t, 1, calls.Load())
}

// DeadLetter writes the reason, handler, group and attempts as the entry's
// own fields (no Watermill poison metadata), and leaves an event whose
// context ended (router closing) pending instead.
func TestDeadLetterWritesTheEntryAndSkipsCancelled(t *testing.T) {
	ctx := context.Background()
	b, err := bus.New(bus.Config{ServiceName: "t", Client: redistest.Client(t), StreamPrefix: redistest.Prefix(t)}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	var reasons []string
	dl := middleware.DeadLetter{Queue: b.DeadLetters(), Handler: "h",
		OnDeadLetter: func(_ *message.Message, reason error) { reasons = append(reasons, reason.Error()) }}

	msg := event("a.b", "{}")
	msg.Metadata.Set(bus.MetaTopic, "a.b")
	msg.Metadata.Set(bus.MetaGroup, "t.h")
	msg.Metadata.Set(middleware.MetaAttempt, "3")
	out, err := dl.Middleware(func(*message.Message) ([]*message.Message, error) {
		return nil, errors.New("storage unavailable")
	})(msg)
	require.NoError(t, err, "dead-lettered: acked")
	assert.Empty(t, out)
	assert.Equal(t, []string{"storage unavailable"}, reasons)
	letters, err := b.DeadLetters().List(ctx, "-", 10)
	require.NoError(t, err)
	require.Len(t, letters, 1)
	d := letters[0]
	assert.Equal(t, "storage unavailable", d.Reason)
	assert.Equal(t, "h", d.Handler)
	assert.Equal(t, "t.h", d.Group)
	assert.Equal(t, 3, d.Attempts)
	for k := range d.Fields {
		assert.False(t, strings.HasPrefix(k, "_watermill") || strings.Contains(k, "poison"), "field %s", k)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	msg = event("a.b", "{}")
	msg.SetContext(cctx)
	_, err = dl.Middleware(func(m *message.Message) ([]*message.Message, error) { return nil, m.Context().Err() })(msg)
	require.ErrorIs(t, err, context.Canceled, "nacked: stays pending for another instance")
	n, err := b.DeadLetters().Len(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, n, "not dead-lettered")
}
