package openapicheck_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/internal/openapicheck"
)

// recordingTB is a testing.TB that records the failures of the checker
// under test instead of failing this test.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) failures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// The checker fails the test on every kind of mismatch, and passes what
// matches. The handler below stands in for a gateway that breaks its
// contract in each way.
func TestCheckerCatchesMismatches(t *testing.T) {
	h := http.NewServeMux()
	jsonErr := func(w http.ResponseWriter, status int, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
	h.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("case") {
		case "good":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(gateway.OpenAPI())
		case "wrong-body":
			jsonErr(w, 200, `{"openapi":"3.1.0"}`) // info and paths missing
		case "wrong-type":
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, "<html>")
		case "undocumented-status":
			jsonErr(w, 418, `{}`)
		}
	})
	h.HandleFunc("POST /v1/events", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("case") {
		case "accepts-bad-request":
			// The request has no credentials: the document says 401.
			jsonErr(w, 202, `{"ids":["x"]}`)
		case "bad-error-body":
			w.Header().Set("WWW-Authenticate", `Bearer realm="eventbus"`)
			jsonErr(w, 401, `{"error":{"status":401}}`) // message missing
		case "no-challenge":
			jsonErr(w, 401, `{"error":{"status":401,"message":"no credentials"}}`)
		case "good-401":
			w.Header().Set("WWW-Authenticate", `Bearer realm="eventbus"`)
			jsonErr(w, 401, `{"error":{"status":401,"message":"no credentials"}}`)
		}
	})
	h.HandleFunc("GET /undocumented", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hi") })

	for _, tc := range []struct {
		method, target string
		want           string // "" for no failure
	}{
		{"GET", "/openapi.json?case=good", ""},
		{"GET", "/openapi.json?case=wrong-body", "does not match the document"},
		{"GET", "/openapi.json?case=wrong-type", "does not match the document"},
		{"GET", "/openapi.json?case=undocumented-status", "status is not supported"},
		{"POST", "/v1/events?case=accepts-bad-request", "not refused with a 4xx"},
		{"POST", "/v1/events?case=bad-error-body", "does not match the document"},
		{"POST", "/v1/events?case=no-challenge", "WWW-Authenticate"},
		{"POST", "/v1/events?case=good-401", ""},
		{"GET", "/undocumented", "no such operation"},
		{"GET", "/nowhere", ""}, // the mux's 404
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			rec := &recordingTB{TB: t}
			c := openapicheck.New(rec, gateway.OpenAPI())
			srv := httptest.NewServer(c.Handler(h))
			defer srv.Close()
			req, _ := http.NewRequest(tc.method, srv.URL+tc.target, strings.NewReader(`{"specversion":"1.0","id":"a","source":"s","type":"t"}`))
			req.Header.Set("Content-Type", gateway.ContentTypeStructured)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			srv.Close() // the check runs when the handler returns
			errs := rec.failures()
			switch {
			case tc.want == "" && len(errs) > 0:
				t.Errorf("unexpected failures: %q", errs)
			case tc.want != "" && (len(errs) == 0 || !strings.Contains(strings.Join(errs, "\n"), tc.want)):
				t.Errorf("failures %q, want one mentioning %q", errs, tc.want)
			}
		})
	}
}
