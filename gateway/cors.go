package gateway

import (
	"net/http"
	"slices"
	"strings"
)

// corsAllowHeaders are the request headers browsers may send cross-origin:
// the bearer token, the body type, the SSE resume position, the CloudEvents
// binary-mode attributes (ce-<attribute>, HTTP/CloudEvents binding §3.1.3)
// of the event envelope including our extensions, and W3C trace context
// (which the binding carries as plain traceparent/tracestate headers).
// Access-Control-Allow-Headers has no prefix wildcard, so each is listed.
var corsAllowHeaders = strings.Join([]string{
	"Authorization",
	"Content-Type",
	"Last-Event-ID",
	"ce-id",
	"ce-specversion",
	"ce-type",
	"ce-source",
	"ce-subject",
	"ce-time",
	"ce-dataschema",
	"ce-correlationid",
	"ce-causationid",
	"ce-room",
	"ce-user",
	"ce-broadcast",
	"traceparent",
	"tracestate",
}, ", ")

const (
	corsAllowMethods = "GET, POST, OPTIONS"
	corsMaxAge       = "600" // seconds browsers may cache a preflight answer
)

// CORS wraps next with Cross-Origin Resource Sharing for browsers.
//
// A request's Origin is allowed if it equals one of allowedOrigins exactly
// (scheme, host and port, e.g. "https://app.example.com"), or if
// allowedOrigins contains "*", which allows every origin. An allowed origin
// is echoed in Access-Control-Allow-Origin ("*" when the wildcard matched).
// Credentials mode is not enabled: the gateway authenticates with bearer
// tokens (header or access_token), not cookies.
//
// Preflight requests (OPTIONS with Origin and Access-Control-Request-Method)
// are answered here with 204 and never reach next; for an allowed origin
// the answer carries Access-Control-Allow-Methods "GET, POST, OPTIONS",
// Access-Control-Max-Age 600 and Access-Control-Allow-Headers:
// Authorization, Content-Type, Last-Event-ID, ce-id, ce-specversion,
// ce-type, ce-source, ce-subject, ce-time, ce-dataschema, ce-correlationid,
// ce-causationid, ce-room, ce-user, ce-broadcast, traceparent, tracestate.
// For an origin not allowed it carries no CORS headers, so the browser
// refuses the request. Other requests go to next, with
// Access-Control-Allow-Origin added if the origin is allowed.
//
// Every response gets "Vary: Origin" (preflight answers also vary on the
// Access-Control-Request-* headers) so caches never serve one origin's
// answer to another.
//
// allowedOrigins is copied; the handler is safe for concurrent use.
func cors(allowedOrigins []string, next http.Handler) http.Handler {
	wildcard := slices.Contains(allowedOrigins, "*")
	allowed := make(map[string]struct{}, len(allowedOrigins))
	for _, o := range allowedOrigins {
		allowed[o] = struct{}{}
	}
	allowOrigin := func(origin string) (string, bool) {
		if origin == "" {
			return "", false
		}
		if _, ok := allowed[origin]; ok {
			return origin, true
		}
		if wildcard {
			return "*", true
		}
		return "", false
	}

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		acao, ok := allowOrigin(origin)

		if r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if ok {
				h.Set("Access-Control-Allow-Origin", acao)
				h.Set("Access-Control-Allow-Methods", corsAllowMethods)
				h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
				h.Set("Access-Control-Max-Age", corsMaxAge)
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}

		if ok {
			h.Set("Access-Control-Allow-Origin", acao)
		}
		next.ServeHTTP(w, r)
	})
}
