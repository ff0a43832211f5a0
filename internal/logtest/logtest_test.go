package logtest_test

import (
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/stretchr/testify/assert"

	"github.com/shared-infra/eventbus/internal/logtest"
)

func TestRecorder(t *testing.T) {
	var l logtest.Recorder
	var logger watermill.LoggerAdapter = &l
	logger = logger.With(watermill.LogFields{"ignored": 1})
	logger.Info("info", nil)
	logger.Error("Read failed", errors.New("boom"), watermill.LogFields{"k": "v"})
	logger.Error("Ack failed", errors.New("cut"), nil)
	logger.Error("Read failed", errors.New("again"), nil)

	assert.Equal(t, []string{"Read failed: boom map[k:v]", "Ack failed: cut map[]", "Read failed: again map[]"}, l.Errors())
	assert.Equal(t, 2, l.CountErrors("Read failed"))
	assert.Zero(t, l.CountErrors("nothing"))
}
