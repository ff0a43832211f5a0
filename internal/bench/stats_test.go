package bench_test

import (
	"testing"
	"time"

	"github.com/shared-infra/eventbus/internal/bench"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median of 4 is the 2nd", ms(4, 1, 3, 2), 0.5, 2 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(seq(100)...), 0.99, 99 * time.Millisecond},
		{"p99 of 1000 is the 990th", ms(seq(1000)...), 0.99, 990 * time.Millisecond},
		{"p100 is the max", ms(5, 9, 1), 1, 9 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bench.Percentile(tt.in, tt.p); got != tt.want {
				t.Errorf("Percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

// seq returns 1..n.
func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

func TestCountClients(t *testing.T) {
	list := "id=3 addr=127.0.0.1:1 laddr=127.0.0.1:6379 fd=8 name=bench-a age=1 cmd=xreadgroup\n" +
		"id=4 addr=127.0.0.1:2 laddr=127.0.0.1:6379 fd=9 name= age=1 cmd=ping\n" +
		"id=5 addr=127.0.0.1:3 laddr=127.0.0.1:6379 fd=10 name=bench-a age=2 cmd=subscribe\n" +
		"id=6 addr=127.0.0.1:4 laddr=127.0.0.1:6379 fd=11 name=bench-ab age=2 cmd=get\n"
	if got := bench.CountClients(list, "bench-a"); got != 2 {
		t.Errorf("CountClients(bench-a) = %d, want 2", got)
	}
	if got := bench.CountClients(list, "other"); got != 0 {
		t.Errorf("CountClients(other) = %d, want 0", got)
	}
}
