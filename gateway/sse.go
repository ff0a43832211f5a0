package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// sseWriter writes a text/event-stream response, flushing after every
// event so that it reaches the browser at once.
//
// An sseWriter is not safe for concurrent use: one goroutine (the
// connection's writer loop) owns it.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
}

// sseHeaders are the response headers newSSEWriter sets.
var sseHeaders = [...][2]string{
	{"Content-Type", "text/event-stream"},
	{"Cache-Control", "no-cache"},
	{"X-Accel-Buffering", "no"}, // tells nginx not to buffer the stream
}

// newSSEWriter sets the event-stream headers (Content-Type:
// text/event-stream, Cache-Control: no-cache, X-Accel-Buffering: no) and
// commits the response: status 200 and the headers are flushed to the
// client, so call it only after authentication and any other check that may
// still answer with an error status.
//
// It returns an error wrapping [errFlushNotSupported], and leaves the headers
// as they were, when w cannot flush (as found by [http.ResponseController],
// which follows Unwrap methods of wrapping ResponseWriters).
func newSSEWriter(w http.ResponseWriter) (*sseWriter, error) {
	h := w.Header()
	var old [len(sseHeaders)][]string
	for i, kv := range sseHeaders {
		old[i] = h.Values(kv[0])
		h.Set(kv[0], kv[1])
	}
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		if errors.Is(err, http.ErrNotSupported) {
			for i, kv := range sseHeaders {
				if old[i] == nil {
					h.Del(kv[0])
				} else {
					h[http.CanonicalHeaderKey(kv[0])] = old[i]
				}
			}
			return nil, fmt.Errorf("%w: %T", errFlushNotSupported, w)
		}
		return nil, fmt.Errorf("gateway: sse: flush headers: %w", err)
	}
	return &sseWriter{w: w, rc: rc}, nil
}

// WriteEvent writes one event and flushes it:
//
//	id: <id>        (omitted when id is empty)
//	event: <event>  (omitted when event is empty; browsers then use "message")
//	data: <line>    (one line per line of data)
//	<blank line>
//
// data is split on "\r\n", "\n" and "\r", the line ends the SSE format
// knows, so the browser's MessageEvent.data is data with its line ends
// normalised to "\n". Empty data is written as one empty "data:" line;
// note that browsers do not dispatch an event whose data is empty.
//
// An empty id leaves the browser's last event ID unchanged. id and event
// must not contain line breaks (they would end the field early) and id must
// not contain NUL (browsers ignore such an id); such values are rejected
// with an error before anything is written.
func (s *sseWriter) WriteEvent(id, event string, data []byte) error {
	s.buf.Reset()
	b, err := appendEvent(s.buf.AvailableBuffer(), id, event, data)
	if err != nil {
		return err
	}
	s.buf.Write(b)
	return s.flush()
}

// appendEvent appends the SSE message that WriteEvent writes to dst and
// returns the extended slice; dst is unchanged when id or event is invalid.
// The push-stream reader renders each event once with it and shares the
// bytes between every stream the event goes to.
func appendEvent(dst []byte, id, event string, data []byte) ([]byte, error) {
	if strings.ContainsAny(id, "\r\n\x00") {
		return dst, fmt.Errorf("gateway: sse: invalid event id %q: must not contain CR, LF or NUL", id)
	}
	if strings.ContainsAny(event, "\r\n") {
		return dst, fmt.Errorf("gateway: sse: invalid event type %q: must not contain CR or LF", event)
	}
	if id != "" {
		dst = appendField(dst, "id", id)
	}
	if event != "" {
		dst = appendField(dst, "event", event)
	}
	for {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			break
		}
		dst = appendDataLine(dst, data[:i])
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	dst = appendDataLine(dst, data)
	return append(dst, '\n'), nil
}

func appendField(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	if value != "" {
		dst = append(dst, ": "...)
		dst = append(dst, value...)
	} else {
		dst = append(dst, ':')
	}
	return append(dst, '\n')
}

func appendDataLine(dst, line []byte) []byte {
	if len(line) == 0 {
		return append(dst, "data:\n"...)
	}
	dst = append(dst, "data: "...)
	dst = append(dst, line...)
	return append(dst, '\n')
}

// WriteID writes an id field alone ("id: <id>" and a blank line) and
// flushes it. Browsers set their last event ID from it without dispatching
// any event (the data buffer is empty), so a stream can move a browser's
// Last-Event-ID past entries it was not sent. id must be non-empty and must
// not contain CR, LF or NUL.
func (s *sseWriter) WriteID(id string) error {
	if id == "" || strings.ContainsAny(id, "\r\n\x00") {
		return fmt.Errorf("gateway: sse: invalid event id %q: must be non-empty without CR, LF or NUL", id)
	}
	s.buf.Reset()
	s.field("id", id)
	s.buf.WriteByte('\n')
	return s.flush()
}

// WriteComment writes a comment and flushes it: ": <text>" followed by a
// blank line, one ":" line per line of text. Browsers ignore comments;
// they keep idle connections (and proxies) from timing out. The usual
// heartbeat is WriteComment("ping"), which writes ": ping\n\n".
func (s *sseWriter) WriteComment(text string) error {
	s.buf.Reset()
	eachLine([]byte(text), s.comment)
	s.buf.WriteByte('\n')
	return s.flush()
}

// WriteRetry tells the browser to wait ms milliseconds before reconnecting
// after the connection drops ("retry: <ms>" and a blank line) and flushes.
// ms must be 0 or more.
func (s *sseWriter) WriteRetry(ms int) error {
	if ms < 0 {
		return fmt.Errorf("gateway: sse: invalid retry %d: must be 0 or more milliseconds", ms)
	}
	s.buf.Reset()
	s.field("retry", strconv.Itoa(ms))
	s.buf.WriteByte('\n')
	return s.flush()
}

// SetWriteDeadline sets the deadline for the writes and flushes that
// follow, through [http.ResponseController]. A server WriteTimeout applies
// to the whole response and would cut long-lived streams; call
// SetWriteDeadline(time.Time{}) to lift it, or set a deadline before each
// write to drop clients that stop reading.
func (s *sseWriter) SetWriteDeadline(t time.Time) error {
	return s.rc.SetWriteDeadline(t)
}

func (s *sseWriter) field(name, value string) {
	s.buf.WriteString(name)
	if value != "" {
		s.buf.WriteString(": ")
		s.buf.WriteString(value)
	} else {
		s.buf.WriteByte(':')
	}
	s.buf.WriteByte('\n')
}

func (s *sseWriter) comment(text []byte) {
	s.buf.WriteByte(':')
	if len(text) > 0 {
		s.buf.WriteByte(' ')
		s.buf.Write(text)
	}
	s.buf.WriteByte('\n')
}

// eachLine calls fn for each line of b, splitting on "\r\n", "\n" and "\r"
// as the SSE format does. A line end at the end of b is followed by one more,
// empty, line; empty b is one empty line.
func eachLine(b []byte, fn func([]byte)) {
	for {
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			fn(b)
			return
		}
		fn(b[:i])
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			i++
		}
		b = b[i+1:]
	}
}

func (s *sseWriter) flush() error {
	if err := s.writeFrame(s.buf.Bytes()); err != nil {
		return err
	}
	return s.flushNow()
}

// writeFrame writes b, one or more complete SSE messages, without flushing:
// it lands in the response's buffers, and reaches the connection when they
// fill or at the next flushNow. The writer loop writes every frame queued
// for its stream this way and then flushes once.
func (s *sseWriter) writeFrame(b []byte) error {
	if _, err := s.w.Write(b); err != nil {
		return fmt.Errorf("gateway: sse: write: %w", err)
	}
	return nil
}

// flushNow sends what the response has buffered to the connection.
func (s *sseWriter) flushNow() error {
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("gateway: sse: flush: %w", err)
	}
	return nil
}
