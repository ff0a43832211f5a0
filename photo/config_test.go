package photo_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/photo"
)

// A bad worker config is a bus.ErrInvalidConfig, as in every package.
func TestWorkerConfigErrorsAreInvalidConfig(t *testing.T) {
	err := photo.WorkerConfig{}.Validate()
	assert.ErrorIs(t, err, bus.ErrInvalidConfig)
	assert.ErrorContains(t, err, "Store is required")
}
