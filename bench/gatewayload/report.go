package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Result is what one load run measured.
type Result struct {
	Config Config

	ConnectTime   time.Duration
	PublishTime   time.Duration
	Published     [numKinds]int // events published, by kind
	Expected      [numKinds]int // deliveries expected, by kind
	PublishErrors int           // events whose Publish call failed
	MaxBatch      int           // largest Publish call (a publisher that fell behind catches up)

	Received [numKinds]int // deliveries received, by kind
	Cut      int           // streams that ended before the driver stopped them
	CutSlow  int           // of which the gateway said "fell too far behind"
	// CutAt is when each cut stream ended, after publishing began.
	CutAt []time.Duration

	// Latencies of every delivery (receive − publish), sorted.
	Latencies []time.Duration
	// LastDelivery is the time from the first publish to the last delivery.
	LastDelivery time.Duration

	// The gateway process: before any client, with every client connected
	// and idle, and after the run (before and after a GC).
	Baseline, Idle, After, AfterGC procStats
	// GatewayCPU and DriverCPU are the CPU time (user + system) the gateway
	// process and this process used from the first publish to the end of
	// the drain (Window).
	GatewayCPU, DriverCPU, Window time.Duration
}

// ExpectedTotal is the number of deliveries the published events call for.
func (r *Result) ExpectedTotal() int { return r.Expected[0] + r.Expected[1] + r.Expected[2] }

// ReceivedTotal is the number of deliveries received.
func (r *Result) ReceivedTotal() int { return r.Received[0] + r.Received[1] + r.Received[2] }

func (r *Result) collect(clients []*sseClient, pubStart time.Time) {
	var lastRecv int64
	for _, c := range clients {
		for i := range r.Received {
			r.Received[i] += c.kinds[i]
		}
		for _, l := range c.lat {
			r.Latencies = append(r.Latencies, time.Duration(l))
		}
		lastRecv = max(lastRecv, c.lastRecv)
		if c.ended != nil {
			r.Cut++
			r.CutAt = append(r.CutAt, c.endedAt.Sub(pubStart))
			if c.slow {
				r.CutSlow++
			}
		}
	}
	slices.Sort(r.Latencies)
	slices.Sort(r.CutAt)
	if lastRecv > 0 {
		r.LastDelivery = time.Duration(lastRecv - pubStart.UnixNano())
	}
}

// Percentile returns the p-th latency (0 ≤ p ≤ 1), 0 without deliveries.
func (r *Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	return r.Latencies[min(len(r.Latencies)-1, int(p*float64(len(r.Latencies))))]
}

// Markdown renders the result as a table for docs/benchmarks.md.
func (r *Result) Markdown() string {
	c := r.Config
	var b strings.Builder
	published := r.Published[0] + r.Published[1] + r.Published[2]
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	mib := func(v int64) string { return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20)) }
	kib := func(v int64) string { return fmt.Sprintf("%.1f KiB", float64(v)/1024) }
	buffer := "default"
	if c.ClientBuffer != 0 {
		buffer = fmt.Sprint(c.ClientBuffer)
	}

	fmt.Fprintf(&b, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| SSE clients (separate process, loopback) | %d (%d users, %d rooms), connected in %s; ClientBuffer %s |\n",
		c.Clients, c.Users, c.Rooms, r.ConnectTime.Round(time.Millisecond), buffer)
	fmt.Fprintf(&b, "| events published | %d in %s (%.0f/s): %d broadcast, %d user, %d room; %d publish errors; largest batch %d |\n",
		published, r.PublishTime.Round(time.Millisecond), float64(published)/r.PublishTime.Seconds(),
		r.Published[0], r.Published[1], r.Published[2], r.PublishErrors, r.MaxBatch)
	fmt.Fprintf(&b, "| deliveries | %d of %d expected (%.2f %%): broadcast %d/%d, user %d/%d, room %d/%d |\n",
		r.ReceivedTotal(), r.ExpectedTotal(), 100*float64(r.ReceivedTotal())/float64(max(1, r.ExpectedTotal())),
		r.Received[0], r.Expected[0], r.Received[1], r.Expected[1], r.Received[2], r.Expected[2])
	if r.LastDelivery > 0 {
		fmt.Fprintf(&b, "| delivery rate | %.0f/s (first publish to last delivery %s) |\n",
			float64(r.ReceivedTotal())/r.LastDelivery.Seconds(), r.LastDelivery.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "| latency p50 / p99 / max | %s / %s / %s |\n",
		ms(r.Percentile(0.50)), ms(r.Percentile(0.99)), ms(r.Percentile(1)))
	cut := fmt.Sprintf("%d of %d (%d for falling behind)", r.Cut, c.Clients, r.CutSlow)
	if len(r.CutAt) > 0 {
		cut += fmt.Sprintf(": first %s after publishing began, last %s", r.CutAt[0].Round(time.Millisecond), r.CutAt[len(r.CutAt)-1].Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "| streams cut | %s |\n", cut)
	perClient := func(idle, base int64) string { return kib((idle - base) / int64(c.Clients)) }
	fmt.Fprintf(&b, "| gateway RSS: no clients → %d idle clients → after the run (peak) | %s → %s (%s per client) → %s (%s) |\n",
		c.Clients, mib(r.Baseline.RSS), mib(r.Idle.RSS), perClient(r.Idle.RSS, r.Baseline.RSS), mib(r.After.RSS), mib(r.After.PeakRSS))
	fmt.Fprintf(&b, "| gateway Go heap in use (after GC): no clients → %d idle clients → after the run | %s → %s (%s per client) → %s |\n",
		c.Clients, mib(int64(r.Baseline.HeapInuse)), mib(int64(r.Idle.HeapInuse)),
		perClient(int64(r.Idle.HeapInuse), int64(r.Baseline.HeapInuse)), mib(int64(r.AfterGC.HeapInuse)))
	fmt.Fprintf(&b, "| gateway Go heap in use at the end of the drain (before GC); goroutines | %s; %d |\n",
		mib(int64(r.After.HeapInuse)), r.Idle.Goroutines)
	fmt.Fprintf(&b, "| gateway CPU, first publish to end of drain | %.2f s in %s (%.0f %% of one core; %.2f µs per delivery) |\n",
		r.GatewayCPU.Seconds(), r.Window.Round(time.Millisecond), 100*r.GatewayCPU.Seconds()/r.Window.Seconds(),
		float64(r.GatewayCPU.Microseconds())/float64(max(1, r.ReceivedTotal())))
	fmt.Fprintf(&b, "| load process CPU (clients + publisher), same window | %.2f s (%.0f %% of one core) |\n",
		r.DriverCPU.Seconds(), 100*r.DriverCPU.Seconds()/r.Window.Seconds())
	return b.String()
}
