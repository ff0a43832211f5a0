//go:build faults

package faults

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shared-infra/eventbus/internal/redistest"
)

// The child-process harness every SIGKILL test shares: the test binary run
// again as TestHelperProcess with FAULTS_HELPER naming what it does. A child
// prints readyLine once it consumes, and handledLine + event id + " " +
// stream id for every event it handles (one write per line, so what was
// written before SIGKILL reaches the parent); the harness reads them.

// child is a helper process started by startChild.
type child struct {
	t        *testing.T
	cmd      *exec.Cmd
	stderr   lockedBuffer
	ready    chan struct{}
	progress chan struct{} // a token after every HANDLED line
	done     chan struct{} // closed when stdout is read to its end
	waitOnce sync.Once

	mu      sync.Mutex
	handled map[string]int // event id -> HANDLED lines
}

// startChild starts the helper helper with env ("KEY=value") added to the
// test's environment and FAULTS_REDIS_URL and FAULTS_PREFIX set; onHandled,
// when not nil, is called for every HANDLED line. The child is killed at
// cleanup if still alive.
func startChild(t *testing.T, helper, prefix string, onHandled func(id, streamID string), env ...string) *child {
	t.Helper()
	c := &child{
		t:        t,
		ready:    make(chan struct{}),
		progress: make(chan struct{}, 1),
		done:     make(chan struct{}),
		handled:  map[string]int{},
	}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.timeout=120s")
	c.cmd.Env = append(os.Environ(), envHelper+"="+helper, envURL+"="+redistest.URL(), envPrefix+"="+prefix)
	c.cmd.Env = append(c.cmd.Env, env...)
	c.cmd.Stderr = &c.stderr
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill() // by pid: the child only
		c.wait()
	})
	go func() {
		defer close(c.done)
		var readyOnce sync.Once
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == readyLine:
				readyOnce.Do(func() { close(c.ready) })
			case strings.HasPrefix(line, handledLine):
				f := strings.Fields(strings.TrimPrefix(line, handledLine))
				if len(f) != 2 {
					continue
				}
				if onHandled != nil {
					onHandled(f[0], f[1])
				}
				c.mu.Lock()
				c.handled[f[0]]++
				c.mu.Unlock()
				select {
				case c.progress <- struct{}{}:
				default:
				}
			}
		}
	}()
	return c
}

func (c *child) wait() { c.waitOnce.Do(func() { _ = c.cmd.Wait() }) }

// waitReady fails the test unless the child is ready within timeout.
func (c *child) waitReady(timeout time.Duration) {
	c.t.Helper()
	select {
	case <-c.ready:
	case <-time.After(timeout):
		c.t.Fatalf("child %s not ready in %s; stderr:\n%s", c.helper(), timeout, c.stderr.String())
	}
}

// waitHandled fails the test unless the child has handled n distinct events
// before deadline.
func (c *child) waitHandled(n int, deadline <-chan time.Time) {
	c.t.Helper()
	for c.count() < n {
		select {
		case <-c.progress:
		case <-deadline:
			c.t.Fatalf("child %s handled %d events, want %d; stderr:\n%s", c.helper(), c.count(), n, c.stderr.String())
		}
	}
}

// count returns the distinct events the child handled.
func (c *child) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.handled)
}

// handledIDs returns a copy of event id -> HANDLED lines.
func (c *child) handledIDs() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.handled))
	for k, v := range c.handled {
		out[k] = v
	}
	return out
}

// kill sends SIGKILL to the child, waits for it and for its last lines, and
// returns when it was sent.
func (c *child) kill() time.Time {
	c.t.Helper()
	at := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatalf("SIGKILL child %s: %v", c.helper(), err)
	}
	c.wait()
	<-c.done
	return at
}

func (c *child) helper() string {
	for _, kv := range c.cmd.Env {
		if v, ok := strings.CutPrefix(kv, envHelper+"="); ok {
			return v
		}
	}
	return "?"
}

// lockedBuffer is a bytes.Buffer safe for the exec package's copying
// goroutine and the test reading it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// printHandled writes the HANDLED line of one event (in a child).
func printHandled(id, streamID string) {
	_, _ = os.Stdout.WriteString(handledLine + id + " " + streamID + "\n")
}

// printReady writes the READY line (in a child).
func printReady() { _, _ = os.Stdout.WriteString(readyLine + "\n") }
