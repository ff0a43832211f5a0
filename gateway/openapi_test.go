package gateway_test

import (
	"testing"

	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/internal/openapicheck"
)

// The embedded document is OpenAPI 3.1 and valid (kin-openapi's loader and
// validator, which know 3.1).
func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc, err := openapicheck.Load(gateway.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsOpenAPI31OrLater() || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi is %q, want 3.1.0", doc.OpenAPI)
	}
}
