package demo_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/internal/demo"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// checkRun checks the summary and the trace of a complete run.
func checkRun(t *testing.T, sum demo.Summary, out string) {
	t.Helper()
	t.Logf("demo output:\n%s", out)
	assert.Equal(t, 6, sum.Photos)
	assert.Equal(t, 4, sum.Completed)
	assert.Equal(t, 2, sum.Failed)
	assert.Equal(t, 8, sum.Thumbnails)
	assert.Equal(t, 6, sum.Notifications)
	assert.Zero(t, sum.DeadLetters)
	assert.Positive(t, sum.Duration)

	// Photo by photo, in upload order, each with its whole story.
	last := -1
	for _, id := range []string{"photo-1", "photo-2", "photo-3", "photo-4", "photo-5", "photo-6"} {
		i := strings.Index(out, "\n"+id+"  ")
		require.Greater(t, i, last, "%s is traced after the photo before it", id)
		last = i
	}
	assert.Contains(t, out, "photo.processing.completed  300x200 jpeg → small 160x107, medium 300x200")
	assert.Contains(t, out, "photo.processing.failed     [corrupt] corrupt image: the JPEG data is truncated or damaged")
	assert.Contains(t, out, "photo.processing.failed     [unsupported_format] unsupported format: the file is not a JPEG, PNG or GIF image")
	assert.Contains(t, out, `photo.notification          to user alice: "Your photo is ready: 300x200 JPEG, 2 thumbnails."`)
	assert.Contains(t, out, "photo.processing.progress    10% decoding")
	assert.Equal(t, 4, strings.Count(out, "photo.processing.completed "))
	assert.Equal(t, 6, strings.Count(out, "photo.notification "))
	assert.Equal(t, 6, strings.Count(out, "photo.processing.started "))
	assert.NotContains(t, out, "unfinished")
	assert.Contains(t, out, "summary: 6 photos, 4 completed, 2 failed, 8 thumbnails written, 6 notifications, 0 dead letters, in ")
}

func TestRunOnEmbeddedRedis(t *testing.T) {
	var out bytes.Buffer
	sum, err := demo.Run(t.Context(), &out, demo.Options{ImageScale: 0.25})
	require.NoError(t, err)
	assert.Contains(t, sum.Redis, "embedded Redis (miniredis)")
	assert.True(t, strings.HasPrefix(sum.StreamPrefix, "demo-"))
	checkRun(t, sum, out.String())
}

func TestRunOnRedis(t *testing.T) {
	redistest.Client(t) // fails with a how-to if no Redis answers
	prefix := redistest.Prefix(t)
	var out bytes.Buffer
	sum, err := demo.Run(t.Context(), &out, demo.Options{RedisURL: redistest.URL(), StreamPrefix: prefix, ImageScale: 0.25})
	require.NoError(t, err)
	assert.Equal(t, prefix, sum.StreamPrefix)
	checkRun(t, sum, out.String())
}

func TestRunTwiceOnOneRedisDoesNotMix(t *testing.T) {
	redistest.Client(t)
	// Generated prefixes: two runs at once, each sees only its own photos,
	// and each deletes its keys at the end.
	type result struct {
		sum demo.Summary
		err error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			sum, err := demo.Run(t.Context(), nil, demo.Options{RedisURL: redistest.URL(), ImageScale: 0.1})
			results <- result{sum, err}
		}()
	}
	var prefixes []string
	for range 2 {
		r := <-results
		require.NoError(t, r.err)
		assert.Equal(t, 4, r.sum.Completed)
		assert.Equal(t, 2, r.sum.Failed)
		assert.Equal(t, 6, r.sum.Notifications)
		prefixes = append(prefixes, r.sum.StreamPrefix)
	}
	assert.NotEqual(t, prefixes[0], prefixes[1])
	c := redistest.Client(t)
	for _, p := range prefixes {
		keys, err := c.Keys(context.Background(), p+"*").Result()
		require.NoError(t, err)
		assert.Empty(t, keys, "keys of %s deleted", p)
	}
}

func TestRunTimesOut(t *testing.T) {
	var out bytes.Buffer
	sum, err := demo.Run(t.Context(), &out, demo.Options{ImageScale: 0.25, Timeout: time.Millisecond})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "timed out after 1ms")
	assert.Contains(t, err.Error(), "photos unfinished")
	assert.Equal(t, 6, sum.Photos)
	assert.Contains(t, out.String(), "(unfinished)")
	assert.Contains(t, out.String(), "summary: 6 photos")
}
