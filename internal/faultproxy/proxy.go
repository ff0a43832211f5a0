// Package faultproxy is a TCP proxy for fault-injection tests. It forwards
// connections from a loopback port to a target (such as Redis) and can, on
// demand, cut every connection, stall all traffic, or refuse new connections.
//
// Point the client under test at Proxy.Addr instead of the server. Note that
// go-redis retries a command on a broken connection (Options.MaxRetries,
// default 3): set MaxRetries to -1 to see a cut as an error.
//
// All methods of Proxy are safe for concurrent use.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// DefaultDialTimeout bounds how long the proxy tries to reach the target for
// each accepted connection; if it cannot, the client connection is closed.
const DefaultDialTimeout = 5 * time.Second

// closeTimeout bounds how long Close waits for the proxy's goroutines.
const closeTimeout = 5 * time.Second

// ErrCloseTimeout is returned by Close when the proxy's goroutines did not all
// exit in time.
var ErrCloseTimeout = errors.New("faultproxy: goroutines did not exit on close")

// Proxy forwards TCP connections from Addr to a target. The zero value is not
// usable; create one with New.
type Proxy struct {
	target string
	ln     net.Listener
	dialer net.Dialer

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loop and connection goroutines

	mu       sync.Mutex
	closed   bool
	refusing bool
	refused  int           // connections closed because refusing
	resume   chan struct{} // non-nil while stalled; closed when unstalled
	gen      uint64        // bumped by CutAll
	links    map[*link]struct{}
}

// link is one proxied connection: the client side and the target side.
type link struct {
	client, target net.Conn
	once           sync.Once
	done           chan struct{} // closed by close
}

// close closes both sides; safe to call many times.
func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		_ = l.client.Close()
		_ = l.target.Close()
	})
}

// New starts a proxy listening on 127.0.0.1 on a free port, forwarding to
// target ("host:port"). Stop it with Close.
func New(target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("faultproxy: invalid target %q: want host:port: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target: target,
		ln:     ln,
		dialer: net.Dialer{Timeout: DefaultDialTimeout},
		ctx:    ctx,
		cancel: cancel,
		links:  map[*link]struct{}{},
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the address clients should connect to, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Conns returns the number of connections being forwarded now.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// CutAll closes every current connection, both the client side and the target
// side, as a network failure or server restart would. The proxy keeps
// accepting new connections.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	p.gen++
	links := p.snapshotLocked()
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// SetStalled stops (true) or resumes (false) forwarding bytes in both
// directions on every connection, current and new. While stalled, connections
// stay open and bytes sent are held, so clients hang until their timeouts;
// on resume, held bytes are delivered.
func (p *Proxy) SetStalled(stalled bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case stalled && p.resume == nil:
		p.resume = make(chan struct{})
	case !stalled && p.resume != nil:
		close(p.resume)
		p.resume = nil
	}
}

// SetRefusing makes the proxy close new connections right after accepting
// them (true), or forward them again (false). Current connections are not
// affected; combine with CutAll to simulate a server that went away.
func (p *Proxy) SetRefusing(refusing bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refusing = refusing
}

// Refused returns how many connections the proxy has closed at once because
// it was refusing: how often a client tried to reach a "down" server.
func (p *Proxy) Refused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}

// Close stops listening, closes every connection and waits (bounded) for all
// the proxy's goroutines to exit. It is idempotent: later calls return nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.cancel()
	links := p.snapshotLocked()
	p.mu.Unlock()

	_ = p.ln.Close()
	for _, l := range links {
		l.close()
	}

	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(closeTimeout):
		return ErrCloseTimeout
	}
}

func (p *Proxy) snapshotLocked() []*link {
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	return links
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (e.g. too many open files): back off briefly.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		p.mu.Lock()
		if p.closed || p.refusing {
			if p.refusing {
				p.refused++
			}
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		gen := p.gen
		// The accept loop holds a count, so this Add cannot race with Wait
		// seeing zero.
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c, gen)
	}
}

// serve dials the target for client connection c and forwards bytes both ways
// until either side ends or the link is cut. gen is the CutAll generation at
// accept time: a CutAll while dialing cuts this connection too.
func (p *Proxy) serve(c net.Conn, gen uint64) {
	defer p.wg.Done()
	t, err := p.dialer.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	l := &link{client: c, target: t, done: make(chan struct{})}

	p.mu.Lock()
	if p.closed || p.gen != gen {
		p.mu.Unlock()
		l.close()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()

	var pipes sync.WaitGroup
	pipes.Add(1)
	go func() {
		defer pipes.Done()
		p.pipe(l, t, c)
	}()
	p.pipe(l, c, t)
	pipes.Wait()
	l.close()

	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// pipe copies from src to dst until an error or until the link is closed,
// holding bytes while the proxy is stalled. On a clean EOF from src it passes
// the half-close on (CloseWrite on dst) and leaves the other direction
// running; on any other end it closes the whole link.
func (p *Proxy) pipe(l *link, src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitUnstalled(l) {
				l.close()
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				l.close()
				return
			}
		}
		if err != nil {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && errors.Is(err, io.EOF) {
				if cw.CloseWrite() == nil {
					return
				}
			}
			l.close()
			return
		}
	}
}

// waitUnstalled blocks while the proxy is stalled. It returns false if the
// link was closed meanwhile.
func (p *Proxy) waitUnstalled(l *link) bool {
	for {
		p.mu.Lock()
		resume := p.resume
		p.mu.Unlock()
		if resume == nil {
			return true
		}
		select {
		case <-resume:
		case <-l.done:
			return false
		}
	}
}
