package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/shared-infra/eventbus/gateway"
)

func TestCORS(t *testing.T) {
	const app = "https://app.example.com"
	exact := []string{app, "http://localhost:5173"}
	wildcard := []string{"*"}

	tests := []struct {
		name       string
		origins    []string
		method     string
		origin     string
		reqMethod  string // Access-Control-Request-Method
		wantACAO   string
		wantNext   bool
		wantStatus int
	}{
		{"no origin", exact, http.MethodGet, "", "", "", true, 200},
		{"allowed GET", exact, http.MethodGet, app, "", app, true, 200},
		{"allowed POST", exact, http.MethodPost, "http://localhost:5173", "", "http://localhost:5173", true, 200},
		{"other origin", exact, http.MethodGet, "https://evil.example.com", "", "", true, 200},
		{"prefix is not a match", exact, http.MethodGet, app + ".evil.com", "", "", true, 200},
		{"scheme differs", exact, http.MethodGet, "http://app.example.com", "", "", true, 200},
		{"wildcard", wildcard, http.MethodGet, "https://anything.test", "", "*", true, 200},
		{"wildcard plus exact echoes", append([]string{"*"}, app), http.MethodGet, app, "", app, true, 200},
		{"preflight allowed", exact, http.MethodOptions, app, "POST", app, false, 204},
		{"preflight other origin", exact, http.MethodOptions, "https://evil.example.com", "POST", "", false, 204},
		{"preflight wildcard", wildcard, http.MethodOptions, "https://anything.test", "GET", "*", false, 204},
		{"OPTIONS that is no preflight", exact, http.MethodOptions, app, "", app, true, 200},
		{"nothing allowed", nil, http.MethodGet, app, "", "", true, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			h := gateway.CORS(tt.origins, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called = true
			}))
			r := httptest.NewRequest(tt.method, "/events", nil)
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			if tt.reqMethod != "" {
				r.Header.Set("Access-Control-Request-Method", tt.reqMethod)
				r.Header.Set("Access-Control-Request-Headers", "authorization, ce-type")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			res := rec.Result()

			if called != tt.wantNext {
				t.Errorf("next called = %v, want %v", called, tt.wantNext)
			}
			if res.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", res.StatusCode, tt.wantStatus)
			}
			if got := res.Header.Get("Access-Control-Allow-Origin"); got != tt.wantACAO {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, tt.wantACAO)
			}
			if !slices.Contains(res.Header.Values("Vary"), "Origin") {
				t.Errorf("Vary = %q, want it to include Origin", res.Header.Values("Vary"))
			}
			if res.Header.Get("Access-Control-Allow-Credentials") != "" {
				t.Error("Access-Control-Allow-Credentials set")
			}

			preflightOK := tt.reqMethod != "" && tt.wantACAO != ""
			methods := res.Header.Get("Access-Control-Allow-Methods")
			headers := res.Header.Get("Access-Control-Allow-Headers")
			if !preflightOK {
				if methods != "" || headers != "" {
					t.Errorf("preflight headers on a non-preflight or refused request: %q, %q", methods, headers)
				}
				return
			}
			if methods != "GET, POST, OPTIONS" {
				t.Errorf("Access-Control-Allow-Methods = %q", methods)
			}
			for _, want := range []string{
				"Authorization", "Content-Type", "Last-Event-ID",
				"ce-id", "ce-specversion", "ce-type", "ce-source", "ce-subject", "ce-time",
				"ce-room", "ce-user", "ce-broadcast", "traceparent",
			} {
				if !slices.Contains(strings.Split(headers, ", "), want) {
					t.Errorf("Access-Control-Allow-Headers %q lacks %s", headers, want)
				}
			}
			if res.Header.Get("Access-Control-Max-Age") == "" {
				t.Error("no Access-Control-Max-Age")
			}
			for _, v := range []string{"Access-Control-Request-Method", "Access-Control-Request-Headers"} {
				if !slices.Contains(res.Header.Values("Vary"), v) {
					t.Errorf("preflight Vary = %q lacks %s", res.Header.Values("Vary"), v)
				}
			}
		})
	}
}
