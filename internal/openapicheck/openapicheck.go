// Package openapicheck validates HTTP traffic against an OpenAPI document in
// tests: every request a test sends and every response it gets, with
// kin-openapi's openapi3filter (ValidateRequest, ValidateResponse). A
// mismatch fails the test.
//
// The rules, besides the document's schemas:
//   - a response's status must be documented for its operation
//     (IncludeResponseStatus);
//   - a request the document does not accept (a bad body, a missing
//     credential, a parameter that does not match) must be refused with a
//     4xx status — a test may send bad requests, the gateway must refuse
//     them;
//   - a request whose path or method the document does not have must be
//     answered 404 or 405, as http.ServeMux does.
//
// kin-openapi v0.153.0 loads and validates OpenAPI 3.1 documents and, for
// them, validates schemas with its JSON Schema 2020-12 validator
// (openapi3filter turns on openapi3.EnableJSONSchema2020 when
// doc.IsOpenAPI31OrLater), so the document stays 3.1.
package openapicheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

func init() {
	// Bodies the document describes as strings that openapi3filter has no
	// decoder for: the SSE stream and OpenMetrics.
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/openmetrics-text", openapi3filter.PlainBodyDecoder)
}

// Load parses and validates an OpenAPI document.
func Load(doc []byte) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	t, err := loader.LoadFromData(doc)
	if err != nil {
		return nil, fmt.Errorf("load the OpenAPI document: %w", err)
	}
	if err := t.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is not valid: %w", err)
	}
	return t, nil
}

// Key is one (operation, status) pair seen.
type Key struct {
	Method string // upper case
	Path   string // the document's path
	Status int
}

func (k Key) String() string { return fmt.Sprintf("%s %s %d", k.Method, k.Path, k.Status) }

// Checker validates traffic against one document, failing t on a mismatch.
// It records every (operation, status) it saw. Safe for concurrent use.
type Checker struct {
	t      testing.TB
	doc    *openapi3.T
	router routers.Router

	mu      sync.Mutex
	seen    map[Key]int
	ignored map[string]bool // URL paths not checked
}

// Ignore stops checking the exchanges of the URL path, for a handler a
// test mounts that is not part of the API (a page, say).
func (c *Checker) Ignore(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ignored[path] = true
}

// New returns a Checker of doc. It fails t at once if doc does not load or
// validate.
func New(t testing.TB, doc []byte) *Checker {
	t.Helper()
	d, err := Load(doc)
	if err != nil {
		t.Fatal(err)
	}
	r, err := legacy.NewRouter(d)
	if err != nil {
		t.Fatalf("openapicheck: router: %v", err)
	}
	return &Checker{t: t, doc: d, router: r, seen: map[Key]int{}, ignored: map[string]bool{}}
}

// Doc returns the loaded document.
func (c *Checker) Doc() *openapi3.T { return c.doc }

// Seen returns how often each (operation, status) was seen.
func (c *Checker) Seen() map[Key]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[Key]int, len(c.seen))
	for k, v := range c.seen {
		out[k] = v
	}
	return out
}

// Documented returns every (operation, status) of the document, sorted,
// keeping only the paths keep accepts (nil keeps all).
func (c *Checker) Documented(keep func(path string, item *openapi3.PathItem) bool) []Key {
	var out []Key
	for path, item := range c.doc.Paths.Map() {
		if keep != nil && !keep(path, item) {
			continue
		}
		for method, op := range item.Operations() {
			for code := range op.Responses.Map() {
				var status int
				if _, err := fmt.Sscanf(code, "%d", &status); err != nil {
					c.t.Errorf("openapicheck: %s %s: response %q is not a status code", method, path, code)
					continue
				}
				out = append(out, Key{Method: method, Path: path, Status: status})
			}
		}
	}
	slices.SortFunc(out, func(a, b Key) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// authenticate checks that the credential a security scheme names is
// present; whether it is accepted is the gateway's business (401).
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	s := in.SecurityScheme
	switch {
	case s.Type == "http" && strings.EqualFold(s.Scheme, "bearer"):
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return errors.New("no Authorization: Bearer header")
		}
	case s.Type == "apiKey" && s.In == "query":
		if r.URL.Query().Get(s.Name) == "" {
			return fmt.Errorf("no %s query parameter", s.Name)
		}
	case s.Type == "apiKey" && s.In == "header":
		if r.Header.Get(s.Name) == "" {
			return fmt.Errorf("no %s header", s.Name)
		}
	default:
		return fmt.Errorf("security scheme %q of type %s is not checked by openapicheck", in.SecuritySchemeName, s.Type)
	}
	return nil
}

// exchange is one request and its response, as the checker saw them.
type exchange struct {
	req     *http.Request // its Body already read into reqBody
	reqBody []byte
	status  int
	header  http.Header
	body    []byte
}

// check validates one exchange and records it.
func (c *Checker) check(x exchange) {
	c.t.Helper()
	r := x.req
	c.mu.Lock()
	skip := c.ignored[r.URL.Path]
	c.mu.Unlock()
	if skip {
		return
	}
	what := fmt.Sprintf("openapicheck: %s %s -> %d", r.Method, r.URL.RequestURI(), x.status)
	route, pathParams, err := c.router.FindRoute(r)
	if err != nil {
		var want int
		switch {
		case errors.Is(err, routers.ErrMethodNotAllowed):
			want = http.StatusMethodNotAllowed
		default:
			want = http.StatusNotFound
		}
		if x.status != want && x.status != http.StatusNotFound && x.status != http.StatusMethodNotAllowed {
			c.t.Errorf("%s: the document has no such operation (%v), so the answer must be 404 or 405", what, err)
		}
		return
	}
	c.mu.Lock()
	c.seen[Key{Method: route.Method, Path: route.Path, Status: x.status}]++
	c.mu.Unlock()

	vr := r.Clone(context.Background())
	vr.Body = io.NopCloser(bytes.NewReader(x.reqBody))
	opts := &openapi3filter.Options{
		AuthenticationFunc:    authenticate,
		IncludeResponseStatus: true,
		MultiError:            true,
	}
	in := &openapi3filter.RequestValidationInput{Request: vr, PathParams: pathParams, Route: route, Options: opts}
	if reqErr := openapi3filter.ValidateRequest(context.Background(), in); reqErr != nil && (x.status < 400 || x.status > 499) {
		c.t.Errorf("%s: the request does not match the document, yet it was not refused with a 4xx status: %v", what, reqErr)
	}
	// The request's validation may have consumed the body.
	in.Request = r.Clone(context.Background())
	in.Request.Body = io.NopCloser(bytes.NewReader(x.reqBody))
	rin := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 x.status,
		Header:                 x.header,
		Body:                   io.NopCloser(bytes.NewReader(x.body)),
		Options:                opts,
	}
	if err := openapi3filter.ValidateResponse(context.Background(), rin); err != nil {
		c.t.Errorf("%s: the response does not match the document: %v\nheaders: %v\nbody: %.500s", what, err, x.header, x.body)
	}
}

// Handler wraps h: every request it serves and the response it writes are
// validated once h returns (for a stream, once it ends). The response is
// passed through as it is written. Flushing and write deadlines go through
// http.ResponseController, which unwraps to the real ResponseWriter.
func (c *Checker) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			c.t.Errorf("openapicheck: read the request body: %v", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		orig := r.Clone(context.Background())
		rec := &recorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		c.check(exchange{req: orig, reqBody: body, status: status, header: w.Header().Clone(), body: rec.body.Bytes()})
	})
}

// recorder passes a response through and keeps a copy.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body.Write(b)
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer (Flush, write
// deadlines).
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// recorder has no Flush method of its own: http.ResponseController
// unwraps it, so flushing works exactly when the real writer can flush (a
// Flush that could not fail would hide a writer that cannot).

// Transport wraps base (nil: http.DefaultTransport) for a client of a real
// server: each request and response are validated when the response's body
// is closed (the body is read through to the caller meanwhile, and the rest
// read at Close, except for an event stream).
func (c *Checker) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		var body []byte
		if r.Body != nil {
			var err error
			if body, err = io.ReadAll(r.Body); err != nil {
				return nil, err
			}
			_ = r.Body.Close()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		orig := r.Clone(context.Background())
		resp, err := base.RoundTrip(r)
		if err != nil {
			return nil, err
		}
		stream := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
		resp.Body = &teeBody{rc: resp.Body, drain: !stream, done: func(b []byte) {
			c.check(exchange{req: orig, reqBody: body, status: resp.StatusCode, header: resp.Header, body: b})
		}}
		return resp, nil
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// teeBody keeps what the caller reads and validates it on Close. With
// drain, Close first reads what the caller left unread (up to 16 MiB), so
// that a test that only looks at the status still has the whole body
// checked; a stream (which would not end) is checked as far as it was read.
type teeBody struct {
	rc    io.ReadCloser
	buf   bytes.Buffer
	drain bool
	once  sync.Once
	done  func([]byte)
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.buf.Write(p[:n])
	return n, err
}

func (b *teeBody) Close() error {
	if b.drain {
		_, _ = io.Copy(&b.buf, io.LimitReader(b.rc, 16<<20))
	}
	err := b.rc.Close()
	b.once.Do(func() { b.done(b.buf.Bytes()) })
	return err
}
