// Package logtest has a watermill.LoggerAdapter for tests that records what
// is logged at the Error level, so that a test can assert that nothing went
// wrong (or that a fault it injected was seen). It is shared by the bus
// cluster tests and the fault-injection suite.
package logtest

import (
	"fmt"
	"strings"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
)

// Recorder is a watermill.LoggerAdapter that records Error calls, each as
// "msg: err fields", and drops every other level. Its zero value is ready to
// use; it is safe for concurrent use. With returns the same Recorder.
type Recorder struct {
	mu     sync.Mutex
	errors []string
}

var _ watermill.LoggerAdapter = (*Recorder)(nil)

// Error records msg, err and fields.
func (l *Recorder) Error(msg string, err error, fields watermill.LogFields) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errors = append(l.errors, fmt.Sprintf("%s: %v %v", msg, err, fields))
}

// Info does nothing.
func (l *Recorder) Info(string, watermill.LogFields) {}

// Debug does nothing.
func (l *Recorder) Debug(string, watermill.LogFields) {}

// Trace does nothing.
func (l *Recorder) Trace(string, watermill.LogFields) {}

// With returns l: the fields are not recorded.
func (l *Recorder) With(watermill.LogFields) watermill.LoggerAdapter { return l }

// Errors returns a copy of the recorded errors, oldest first.
func (l *Recorder) Errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errors...)
}

// CountErrors returns how many recorded errors contain s.
func (l *Recorder) CountErrors(s string) int {
	n := 0
	for _, e := range l.Errors() {
		if strings.Contains(e, s) {
			n++
		}
	}
	return n
}
