package gateway_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
)

// Every bad gateway config is a bus.ErrInvalidConfig, as in every package,
// and a nested config's problems are not wrapped twice.
func TestConfigErrorsAreInvalidConfig(t *testing.T) {
	for name, err := range map[string]error{
		"Config":                 gateway.Config{ClientBuffer: -1}.Validate(),
		"AuthConfig":             gateway.AuthConfig{}.Validate(),
		"IngressConfig":          gateway.IngressConfig{}.Validate(),
		"IngressPublisherConfig": gateway.IngressPublisherConfig{URL: "ftp://x"}.Validate(),
	} {
		assert.ErrorIs(t, err, bus.ErrInvalidConfig, name)
		if err != nil {
			assert.NotContains(t, err.Error(), "invalid config: invalid config", name)
		}
	}
	// Auth's, Ingress's and Config's own problems: three groups, each once.
	err := gateway.Config{ClientBuffer: -1}.Validate()
	assert.Equal(t, 3, strings.Count(err.Error(), "invalid config: gateway: "), err.Error())
}
