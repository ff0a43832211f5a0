package bus_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

// topicVectors is bus/testdata/topic_vectors.json: the type, pattern and
// match cases that the Go matcher and the TypeScript client's matcher
// (clients/typescript) must both agree with.
type topicVectors struct {
	Match []struct {
		Pattern string `json:"pattern"`
		Type    string `json:"type"`
		Match   bool   `json:"match"`
	} `json:"match"`
	Types []struct {
		Type  string `json:"type"`
		Valid bool   `json:"valid"`
	} `json:"types"`
	Patterns []struct {
		Pattern string `json:"pattern"`
		Valid   bool   `json:"valid"`
	} `json:"patterns"`
}

func TestTopicVectorsShared(t *testing.T) {
	raw, err := os.ReadFile("testdata/topic_vectors.json")
	require.NoError(t, err)
	var v topicVectors
	require.NoError(t, json.Unmarshal(raw, &v))
	require.NotEmpty(t, v.Match)
	for _, c := range v.Match {
		assert.Equal(t, c.Match, bus.Match(c.Pattern, c.Type), "Match(%q, %q)", c.Pattern, c.Type)
	}
	for _, c := range v.Types {
		assert.Equal(t, c.Valid, bus.ValidateType(c.Type) == nil, "ValidateType(%q)", c.Type)
	}
	for _, c := range v.Patterns {
		assert.Equal(t, c.Valid, bus.ValidatePattern(c.Pattern) == nil, "ValidatePattern(%q)", c.Pattern)
	}
}
