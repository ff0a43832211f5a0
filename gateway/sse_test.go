package gateway_test

import (
	"bufio"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shared-infra/eventbus/gateway"
)

func newSSE(t *testing.T) (*gateway.SSEWriter, *httptest.ResponseRecorder) {
	t.Helper()
	rec := httptest.NewRecorder()
	s, err := gateway.NewSSEWriter(rec)
	if err != nil {
		t.Fatalf("NewSSEWriter: %v", err)
	}
	return s, rec
}

func TestNewSSEWriterHeaders(t *testing.T) {
	_, rec := newSSE(t)
	if !rec.Flushed {
		t.Error("headers were not flushed")
	}
	if rec.Code != http.StatusOK {
		t.Errorf("status = %d", rec.Code)
	}
	for k, v := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	} {
		if got := rec.Result().Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// plainWriter hides every optional interface of the recorder, Flush included.
type plainWriter struct{ h http.Header }

func (p *plainWriter) Header() http.Header         { return p.h }
func (p *plainWriter) Write(b []byte) (int, error) { return len(b), nil }
func (p *plainWriter) WriteHeader(int)             {}

// wrapper hides the recorder's Flush but offers it through Unwrap, as
// middleware's ResponseWriter wrappers do.
type wrapper struct{ http.ResponseWriter }

func (w wrapper) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func TestNewSSEWriterNeedsFlush(t *testing.T) {
	w := &plainWriter{h: http.Header{"Cache-Control": {"private"}}}
	_, err := gateway.NewSSEWriter(w)
	if !errors.Is(err, gateway.ErrFlushNotSupported) {
		t.Fatalf("got %v, want ErrFlushNotSupported", err)
	}
	if got := w.h.Get("Content-Type"); got != "" {
		t.Errorf("Content-Type left set to %q", got)
	}
	if got := w.h.Values("Cache-Control"); len(got) != 1 || got[0] != "private" {
		t.Errorf("Cache-Control not restored: %q", got)
	}

	rec := httptest.NewRecorder()
	s, err := gateway.NewSSEWriter(wrapper{rec})
	if err != nil {
		t.Fatalf("through Unwrap: %v", err)
	}
	if err := s.WriteComment("ping"); err != nil || rec.Body.String() != ": ping\n\n" {
		t.Fatalf("through Unwrap: %q, %v", rec.Body.String(), err)
	}
}

func TestSSEWriterBytes(t *testing.T) {
	tests := []struct {
		name  string
		write func(*gateway.SSEWriter) error
		want  string
	}{
		{"full event", func(s *gateway.SSEWriter) error {
			return s.WriteEvent("1-0", "photo.uploaded", []byte(`{"id":"p1"}`))
		}, "id: 1-0\nevent: photo.uploaded\ndata: {\"id\":\"p1\"}\n\n"},
		{"no id, no event", func(s *gateway.SSEWriter) error {
			return s.WriteEvent("", "", []byte("hello"))
		}, "data: hello\n\n"},
		{"id only", func(s *gateway.SSEWriter) error {
			return s.WriteEvent("42", "", []byte("x"))
		}, "id: 42\ndata: x\n\n"},
		{"multi-line data, every line end", func(s *gateway.SSEWriter) error {
			return s.WriteEvent("7", "note", []byte("a\nb\r\nc\rd"))
		}, "id: 7\nevent: note\ndata: a\ndata: b\ndata: c\ndata: d\n\n"},
		{"blank lines inside and at the end", func(s *gateway.SSEWriter) error {
			return s.WriteEvent("", "", []byte("a\n\nb\n"))
		}, "data: a\ndata:\ndata: b\ndata:\n\n"},
		{"leading space kept", func(s *gateway.SSEWriter) error {
			return s.WriteEvent("", "", []byte(" indented"))
		}, "data:  indented\n\n"},
		{"empty data", func(s *gateway.SSEWriter) error {
			return s.WriteEvent("", "e", nil)
		}, "event: e\ndata:\n\n"},
		{"heartbeat", func(s *gateway.SSEWriter) error {
			return s.WriteComment("ping")
		}, ": ping\n\n"},
		{"empty comment", func(s *gateway.SSEWriter) error {
			return s.WriteComment("")
		}, ":\n\n"},
		{"multi-line comment", func(s *gateway.SSEWriter) error {
			return s.WriteComment("a\nb")
		}, ": a\n: b\n\n"},
		{"retry", func(s *gateway.SSEWriter) error {
			return s.WriteRetry(3000)
		}, "retry: 3000\n\n"},
		{"sequence", func(s *gateway.SSEWriter) error {
			return errors.Join(s.WriteRetry(0), s.WriteEvent("1", "a", []byte("x")), s.WriteComment("ping"), s.WriteEvent("2", "b", []byte("y")))
		}, "retry: 0\n\nid: 1\nevent: a\ndata: x\n\n: ping\n\nid: 2\nevent: b\ndata: y\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, rec := newSSE(t)
			rec.Flushed = false
			if err := tt.write(s); err != nil {
				t.Fatal(err)
			}
			if got := rec.Body.String(); got != tt.want {
				t.Errorf("wrote\n%q\nwant\n%q", got, tt.want)
			}
			if !rec.Flushed {
				t.Error("not flushed")
			}
		})
	}
}

func TestSSEWriterRejects(t *testing.T) {
	s, rec := newSSE(t)
	for name, err := range map[string]error{
		"LF in id":       s.WriteEvent("1\ndata: evil", "", []byte("x")),
		"CR in id":       s.WriteEvent("1\r", "", []byte("x")),
		"NUL in id":      s.WriteEvent("1\x00", "", []byte("x")),
		"LF in event":    s.WriteEvent("1", "a\nid: 9", []byte("x")),
		"negative retry": s.WriteRetry(-1),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if rec.Body.Len() != 0 {
		t.Errorf("wrote %q for rejected input", rec.Body.String())
	}
}

// TestSSEWriterStreams reads events over a real connection while the
// handler is still running, which only works if every write is flushed.
func TestSSEWriterStreams(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := gateway.NewSSEWriter(w)
		if err != nil {
			t.Error(err)
			return
		}
		if err := s.WriteEvent("1", "greeting", []byte("hello\nworld")); err != nil {
			t.Error(err)
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	var got strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (so far %q)", err, got.String())
		}
		got.WriteString(line)
		if line == "\n" {
			break
		}
	}
	if want := "id: 1\nevent: greeting\ndata: hello\ndata: world\n\n"; got.String() != want {
		t.Fatalf("got %q, want %q", got.String(), want)
	}
}
