package gateway

import (
	_ "embed"
	"net/http"
	"slices"
)

// OpenAPIPath is where the gateway serves its OpenAPI document.
const OpenAPIPath = "/openapi.json"

// openAPIDocument is the OpenAPI 3.1 description of the gateway's HTTP API.
// It is written by hand, not generated from the code: it is the contract,
// and the tests validate every request they send and every response they
// get against it (openapi_test.go).
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the gateway's OpenAPI 3.1 document (JSON), the one served
// at GET /openapi.json. It describes POST /v1/events, GET /v1/stream, the
// CORS preflights, /openapi.json itself and the endpoints eventbus serve
// mounts (/healthz, /readyz, /stats, /metrics; marked
// "x-eventbus-mounted-by": "serve"). The returned slice is a copy.
func OpenAPI() []byte { return slices.Clone(openAPIDocument) }

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(openAPIDocument)
}
