package router_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/router"
)

// A bad router config is a bus.ErrInvalidConfig, as in every package.
func TestConfigErrorsAreInvalidConfig(t *testing.T) {
	err := router.Config{HandlerTimeout: -5, CloseTimeout: -1}.Validate()
	assert.ErrorIs(t, err, bus.ErrInvalidConfig)
	assert.ErrorContains(t, err, "HandlerTimeout")
	assert.ErrorContains(t, err, "CloseTimeout")
	assert.NoError(t, router.Config{}.Validate())
}
