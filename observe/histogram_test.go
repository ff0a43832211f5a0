package observe_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/observe"
	"github.com/shared-infra/eventbus/router"
)

const processingMetric = "eventbus_handler_processing_seconds"

// TestProcessingTimeIsAHistogram: after N deliveries (one of them failing
// once, so retried inside its delivery) /metrics has
// eventbus_handler_processing_seconds as a histogram, classic buckets in the
// text format (_bucket, _sum, _count == N) and native buckets in the
// protobuf format; /stats keeps its own quantiles with the same count.
func TestProcessingTimeIsAHistogram(t *testing.T) {
	const n = 12
	b := newBus(t)
	r, err := router.New(b, fastConfig(), nil)
	require.NoError(t, err)
	_, reg, srv := newObserver(t, r, observe.Config{}, nil)
	var failed atomic.Bool
	require.NoError(t, router.Handle(r, "resizer", "hist.job", func(_ context.Context, ev bus.Event[job]) error {
		if ev.Data.N == 0 && failed.CompareAndSwap(false, true) {
			return errors.New("once")
		}
		time.Sleep(time.Millisecond)
		return nil
	}))
	// A handler that gets nothing shows an empty histogram.
	require.NoError(t, r.AddHandler("idle", "hist.other", func(context.Context, *message.Message) error { return nil }))
	routertest.Start(t, r)
	for i := range n {
		_, err := bus.Publish(context.Background(), r.Publisher(), "hist.job", job{N: i})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		return r.Stats()["resizer"].Acked == n
	}, 20*time.Second, 10*time.Millisecond)

	// Text format: the classic series.
	code, body := get(t, srv, observe.PathMetrics)
	require.Equal(t, http.StatusOK, code)
	text := string(body)
	assert.Contains(t, text, "# TYPE "+processingMetric+" histogram")
	assert.Contains(t, text, processingMetric+`_bucket{handler_name="resizer",le="0.001"}`)
	assert.Contains(t, text, processingMetric+`_bucket{handler_name="resizer",le="+Inf"} 12`)
	assert.Contains(t, text, processingMetric+`_count{handler_name="resizer"} 12`)
	assert.Contains(t, text, processingMetric+`_sum{handler_name="resizer"}`)
	assert.Contains(t, text, processingMetric+`_count{handler_name="idle"} 0`)
	assert.NotContains(t, text, processingMetric+`{`, "no summary quantile series")

	fams := scrape(t, srv)
	h := histogramOf(t, fams[processingMetric], "resizer")
	assert.EqualValues(t, n, h.GetSampleCount())
	assert.Positive(t, h.GetSampleSum())
	bks := h.GetBucket()
	require.Len(t, bks, len(observe.ProcessingBuckets)+1, "the classic buckets and +Inf")
	assert.True(t, math.IsInf(bks[len(bks)-1].GetUpperBound(), 1))
	assert.EqualValues(t, n, bks[len(bks)-1].GetCumulativeCount())
	for i, bk := range bks[:len(bks)-1] {
		assert.Equal(t, observe.ProcessingBuckets[i], bk.GetUpperBound())
		if i > 0 {
			assert.GreaterOrEqual(t, bk.GetCumulativeCount(), h.GetBucket()[i-1].GetCumulativeCount(), "cumulative")
		}
	}
	// every delivery slept 1ms: none is in the 0.5ms bucket
	assert.Zero(t, h.GetBucket()[0].GetCumulativeCount())

	// Protobuf, as a Prometheus with native histograms scrapes it.
	req, err := http.NewRequest(http.MethodGet, srv.URL+observe.PathMetrics, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Contains(t, resp.Header.Get("Content-Type"), "application/vnd.google.protobuf")
	dec := expfmt.NewDecoder(bytes.NewReader(raw), expfmt.NewFormat(expfmt.TypeProtoDelim))
	var native *dto.Histogram
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err != nil {
			require.ErrorIs(t, err, io.EOF)
			break
		}
		if mf.GetName() == processingMetric {
			require.Equal(t, dto.MetricType_HISTOGRAM, mf.GetType())
			native = histogramOf(t, &mf, "resizer")
		}
	}
	require.NotNil(t, native, "no %s in the protobuf exposition", processingMetric)
	assert.EqualValues(t, n, native.GetSampleCount())
	assert.NotZero(t, native.GetSchema(), "native schema (factor 1.1 is schema 3)")
	assert.EqualValues(t, 3, native.GetSchema())
	var nativeCount uint64
	var cur int64
	for _, d := range native.GetPositiveDelta() {
		cur += d
		nativeCount += uint64(cur)
	}
	assert.EqualValues(t, n, nativeCount+native.GetZeroCount(), "the native buckets hold every observation")
	assert.NotEmpty(t, native.GetPositiveSpan())

	// /stats keeps its JSON summary, same count.
	s := getStats(t, srv)
	assert.EqualValues(t, n, s.Handlers["resizer"].Processing.Count)
	assert.Positive(t, s.Handlers["resizer"].Processing.P99)

	// The metric passes promlint, and testutil sees the same count.
	problems, err := testutil.GatherAndLint(reg, processingMetric)
	require.NoError(t, err)
	assert.Empty(t, problems)
	count, err := testutil.GatherAndCount(reg, processingMetric)
	require.NoError(t, err)
	assert.Equal(t, 2, count, "one series per handler")

}

// histogramOf returns the histogram of handler in f.
func histogramOf(t *testing.T, f *dto.MetricFamily, handler string) *dto.Histogram {
	t.Helper()
	require.NotNil(t, f, "metric family missing")
	for _, m := range f.GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "handler_name" && lp.GetValue() == handler {
				require.NotNil(t, m.GetHistogram(), "%s is not a histogram", f.GetName())
				return m.GetHistogram()
			}
		}
	}
	t.Fatalf("%s has no series for handler_name=%s", f.GetName(), handler)
	return nil
}

// TestNoMetricIsLabelledHandler: every metric the observer registers (the
// bus's and Watermill's) names the handler handler_name, none "handler".
func TestNoMetricIsLabelledHandler(t *testing.T) {
	b := newBus(t)
	r, err := router.New(b, fastConfig(), nil)
	require.NoError(t, err)
	_, reg, _ := newObserver(t, r, observe.Config{}, nil)
	require.NoError(t, r.AddHandler("labels", "lbl.job", func(context.Context, *message.Message) error { return nil }))
	routertest.Start(t, r)
	_, err = bus.Publish(context.Background(), r.Publisher(), "lbl.job", job{N: 1})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return r.Stats()["labels"].Acked == 1 }, 20*time.Second, 10*time.Millisecond)

	requireNoHandlerLabel(t, reg)
}

// requireNoHandlerLabel gathers reg and fails on any label named handler;
// it also checks that some metric carries handler_name.
func requireNoHandlerLabel(t *testing.T, g prometheus.Gatherer) {
	t.Helper()
	fams, err := g.Gather()
	require.NoError(t, err)
	withHandlerName := 0
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				assert.NotEqual(t, "handler", lp.GetName(), "%s has a label named handler", f.GetName())
				if lp.GetName() == "handler_name" {
					withHandlerName++
				}
			}
		}
	}
	assert.Positive(t, withHandlerName, "no metric carries handler_name")
	names := make([]string, 0, len(fams))
	for _, f := range fams {
		names = append(names, f.GetName())
	}
	assert.Contains(t, strings.Join(names, " "), "eventbus_watermill_", "Watermill's metrics were gathered too")
}
