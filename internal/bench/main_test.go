package bench_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// heldLogger counts go-redis's own log lines instead of printing them as they
// come: printed mid-run they split a benchmark's result line, which benchstat
// then cannot read. TestMain reports them at the end.
type heldLogger struct {
	mu    sync.Mutex
	n     int
	first string
}

func (l *heldLogger) Printf(_ context.Context, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == 0 {
		l.first = fmt.Sprintf(format, v...)
	}
	l.n++
}

func TestMain(m *testing.M) {
	logger := &heldLogger{}
	redis.SetLogger(logger)
	loadAvg("start")
	code := m.Run()
	loadAvg("end")
	if logger.n > 0 {
		fmt.Fprintf(os.Stderr, "note: go-redis logged %d line(s) during the run, the first: %s\n", logger.n, logger.first)
	}
	os.Exit(code)
}

// loadAvg prints the machine's load averages (1, 5, 15 min) to stderr, with
// no colon after the label so that benchstat does not take the line for a
// configuration key: benchmark results depend on what else the machine runs.
func loadAvg(when string) {
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(os.Stderr, "load average at %s %s\n", when, strings.Join(strings.Fields(string(b))[:3], " "))
	}
}
