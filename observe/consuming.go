package observe

import (
	"sync"
	"time"
)

// routerState reads the Watermill router's state without blocking:
// message.Router.IsClosed takes a lock that Close holds while it drains
// handlers (up to its CloseTimeout), so a probe that called it directly would
// hang for as long. A router whose IsClosed does not answer within
// closeProbeWait is closing.
type routerState struct {
	wm interface {
		IsRunning() bool
		IsClosed() bool
	}

	mu      sync.Mutex
	closed  bool
	pending chan bool // the probe in progress, if any
}

const closeProbeWait = 100 * time.Millisecond

// RouterStatus values of RouterCheck.Detail.
const (
	RouterNotStarted = "not started"
	RouterRunning    = "running"
	RouterClosing    = "closing"
	RouterClosed     = "closed"
)

func (s *routerState) get() string {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return RouterClosed
	}
	ch := s.pending
	if ch == nil {
		ch = make(chan bool, 1)
		s.pending = ch
		go func() {
			closed := s.wm.IsClosed()
			s.mu.Lock()
			s.closed = s.closed || closed
			s.pending = nil
			s.mu.Unlock()
			ch <- closed
			close(ch)
		}()
	}
	s.mu.Unlock()
	t := time.NewTimer(closeProbeWait)
	defer t.Stop()
	select {
	case closed, ok := <-ch:
		if closed || !ok && s.isClosed() {
			return RouterClosed
		}
	case <-t.C:
		return RouterClosing
	}
	if s.wm.IsRunning() {
		return RouterRunning
	}
	return RouterNotStarted
}

func (s *routerState) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
