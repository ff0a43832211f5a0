package faultproxy_test

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/internal/faultproxy"
)

// echoServer accepts connections on loopback and echoes what it reads; on EOF
// it closes the connection. It stops, and waits for its goroutines, at cleanup.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func newProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(target)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, p.Close()) })
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip sends msg and expects it echoed within 2 s.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(2*time.Second)))
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	buf := make([]byte, len(msg))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, msg, string(buf))
	require.NoError(t, c.SetDeadline(time.Time{}))
}

// requireClosedSoon expects c to be closed by the peer (EOF or reset) within 1 s.
func requireClosedSoon(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Second)))
	_, err := c.Read(make([]byte, 1))
	require.Error(t, err)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after 1 s")
	}
}

// requireHangs expects no byte on c for d.
func requireHangs(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(d)))
	n, err := c.Read(make([]byte, 1))
	require.Zero(t, n)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.NoError(t, c.SetReadDeadline(time.Time{}))
}

func TestNewRejectsBadTarget(t *testing.T) {
	_, err := faultproxy.New("no-port")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `invalid target "no-port": want host:port`)
}

func TestForwardsBothWaysAndHalfClose(t *testing.T) {
	target := echoServer(t)
	p := newProxy(t, target)
	assert.Equal(t, target, p.Target())

	c := dial(t, p.Addr())
	roundTrip(t, c, "hello")
	roundTrip(t, c, "again")
	assert.Equal(t, 1, p.Conns())

	// A half-close reaches the server, and its answer still comes back.
	_, err := c.Write([]byte("last words"))
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
	rest, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "last words", string(rest))
	assert.Eventually(t, func() bool { return p.Conns() == 0 }, 2*time.Second, 10*time.Millisecond)
}

func TestCutAllClosesCurrentConnsKeepsAccepting(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c1, c2 := dial(t, p.Addr()), dial(t, p.Addr())
	roundTrip(t, c1, "one")
	roundTrip(t, c2, "two")
	require.Equal(t, 2, p.Conns())

	p.CutAll()
	requireClosedSoon(t, c1)
	requireClosedSoon(t, c2)
	assert.Eventually(t, func() bool { return p.Conns() == 0 }, 2*time.Second, 10*time.Millisecond)

	c3 := dial(t, p.Addr())
	roundTrip(t, c3, "three")
}

func TestStallHoldsBytesUntilResumed(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, "before")

	p.SetStalled(true)
	p.SetStalled(true) // idempotent
	_, err := c.Write([]byte("held"))
	require.NoError(t, err)
	requireHangs(t, c, 200*time.Millisecond)

	// New connections are stalled too.
	c2 := dial(t, p.Addr())
	_, err = c2.Write([]byte("new"))
	require.NoError(t, err)
	requireHangs(t, c2, 100*time.Millisecond)

	p.SetStalled(false)
	p.SetStalled(false) // idempotent
	require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "held", string(buf))
	buf = make([]byte, 3)
	require.NoError(t, c2.SetReadDeadline(time.Now().Add(2*time.Second)))
	_, err = io.ReadFull(c2, buf)
	require.NoError(t, err)
	assert.Equal(t, "new", string(buf))
	roundTrip(t, c, "after")
}

func TestCutAllWhileStalled(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, "x")
	p.SetStalled(true)
	_, err := c.Write([]byte("stuck"))
	require.NoError(t, err)
	p.CutAll()
	requireClosedSoon(t, c)
	assert.Eventually(t, func() bool { return p.Conns() == 0 }, 2*time.Second, 10*time.Millisecond)
}

func TestRefusing(t *testing.T) {
	p := newProxy(t, echoServer(t))
	old := dial(t, p.Addr())
	roundTrip(t, old, "old")

	p.SetRefusing(true)
	refused := dial(t, p.Addr())  // the TCP handshake succeeds...
	requireClosedSoon(t, refused) // ...then the proxy hangs up
	roundTrip(t, old, "old still works")

	p.SetRefusing(false)
	roundTrip(t, dial(t, p.Addr()), "welcome back")
}

func TestUnreachableTargetClosesClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	target := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now

	p := newProxy(t, target)
	requireClosedSoon(t, dial(t, p.Addr()))
}

func TestCloseStopsEverythingWithoutLeaks(t *testing.T) {
	target := echoServer(t)
	before := runtime.NumGoroutine()

	p, err := faultproxy.New(target)
	require.NoError(t, err)
	var conns []net.Conn
	for i := range 4 {
		c, err := net.Dial("tcp", p.Addr())
		require.NoError(t, err)
		conns = append(conns, c)
		roundTrip(t, c, "hi")
		if i == 3 {
			p.SetStalled(true)
			_, err = c.Write([]byte("stalled"))
			require.NoError(t, err)
		}
	}
	require.Equal(t, 4, p.Conns())
	require.Greater(t, runtime.NumGoroutine(), before)

	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "Close must be idempotent")
	for _, c := range conns {
		requireClosedSoon(t, c)
		_ = c.Close()
	}
	_, err = net.DialTimeout("tcp", p.Addr(), time.Second)
	require.Error(t, err, "proxy still accepts after Close")

	// Methods after Close are harmless.
	p.CutAll()
	p.SetStalled(false)
	p.SetRefusing(true)
	assert.Zero(t, p.Conns())

	// The proxy's goroutines, and the echo server's for these connections, are
	// gone. (Polled by hand: assert.Eventually runs goroutines of its own.)
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("goroutines: %d before, %d after Close:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestConcurrentControl(t *testing.T) {
	p := newProxy(t, echoServer(t))
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				switch (i + j) % 4 {
				case 0:
					p.SetStalled(j%2 == 0)
				case 1:
					p.SetRefusing(j%2 == 0)
				case 2:
					p.CutAll()
				default:
					if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
						_, _ = c.Write([]byte("x"))
						_ = c.Close()
					}
				}
			}
		}()
	}
	wg.Wait()
	p.SetStalled(false)
	p.SetRefusing(false)
	roundTrip(t, dial(t, p.Addr()), "still fine")
}
