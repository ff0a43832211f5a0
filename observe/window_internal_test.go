package observe

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/shared-infra/eventbus/middleware"
)

func st(recv, failed uint64) middleware.HandlerStats {
	return middleware.HandlerStats{Received: recv, Failed: failed}
}

func TestErrorWindowSlides(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	w := newErrorWindow(10 * time.Second)

	total, per := w.compute(t0, map[string]middleware.HandlerStats{"a": st(5, 1)})
	assert.Equal(t, WindowStats{Received: 5, Failed: 1, ErrorRate: 0.2}, total, "no sample yet: everything counted")
	assert.Equal(t, total, per["a"])

	// One sample a second; handler a receives 10/s with 1 failure/s, b
	// appears at second 5 and fails everything.
	for s := 0; s <= 20; s++ {
		stats := map[string]middleware.HandlerStats{"a": st(uint64(10*s), uint64(s))}
		if s >= 5 {
			stats["b"] = st(uint64(s-5), uint64(s-5))
		}
		w.add(at(s), stats)
	}
	now := map[string]middleware.HandlerStats{"a": st(205, 20), "b": st(15, 15)}
	total, per = w.compute(at(20).Add(500*time.Millisecond), now)
	// Oldest sample inside [10.5s, 20.5s] is the one at 11s: a=110/11, b=6/6.
	assert.Equal(t, WindowStats{Seconds: 9.5, Received: 95, Failed: 9, ErrorRate: 9.0 / 95}, per["a"])
	assert.Equal(t, WindowStats{Seconds: 9.5, Received: 9, Failed: 9, ErrorRate: 1}, per["b"])
	assert.Equal(t, WindowStats{Seconds: 9.5, Received: 104, Failed: 18, ErrorRate: 18.0 / 104}, total)

	// Sampling stalled for a minute: the newest sample is the base.
	total, _ = w.compute(at(80), now)
	assert.Equal(t, 60.0, total.Seconds)
	assert.EqualValues(t, 5, total.Received, "205+15 now, 200+15 at 20s")
	assert.Zero(t, total.Failed)
	assert.Zero(t, total.ErrorRate)
}

func TestErrorWindowRetriesCanExceedOne(t *testing.T) {
	w := newErrorWindow(time.Minute)
	t0 := time.Now()
	w.add(t0, map[string]middleware.HandlerStats{"h": st(0, 0)})
	total, _ := w.compute(t0.Add(time.Second), map[string]middleware.HandlerStats{"h": st(2, 6)})
	assert.Equal(t, 3.0, total.ErrorRate, "two deliveries that failed all three attempts")
}
