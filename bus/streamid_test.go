package bus_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
)

func TestParseStreamID(t *testing.T) {
	for _, tc := range []struct {
		in       string
		ms, seq  uint64
		wantsErr bool
	}{
		{in: "1700000000000-5", ms: 1700000000000, seq: 5},
		{in: "1700000000000", ms: 1700000000000},
		{in: "0-0"},
		{in: "18446744073709551615-18446744073709551615", ms: 1<<64 - 1, seq: 1<<64 - 1},
		{in: "", wantsErr: true},
		{in: "-1", wantsErr: true},
		{in: "1-", wantsErr: true},
		{in: "1-2-3", wantsErr: true},
		{in: "99999999999999999999-0", wantsErr: true},
		{in: "$", wantsErr: true},
	} {
		ms, seq, err := bus.ParseStreamID(tc.in)
		if tc.wantsErr {
			assert.ErrorContains(t, err, "is not a stream entry id", tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, [2]uint64{tc.ms, tc.seq}, [2]uint64{ms, seq}, tc.in)
	}
}

// IsNoSuchKey is Redis's answer to XINFO on a stream that does not exist,
// and nothing else.
func TestIsNoSuchKey(t *testing.T) {
	c := redistest.Client(t)
	key := redistest.Prefix(t) + "absent"
	ctx := context.Background()
	_, err := c.XInfoStream(ctx, key).Result()
	assert.True(t, bus.IsNoSuchKey(err), "XINFO STREAM: %v", err)
	_, err = c.XInfoGroups(ctx, key).Result()
	assert.True(t, bus.IsNoSuchKey(err), "XINFO GROUPS: %v", err)

	require.NoError(t, c.Set(ctx, key, "x", 0).Err())
	_, err = c.XInfoStream(ctx, key).Result()
	require.Error(t, err)
	assert.False(t, bus.IsNoSuchKey(err), "WRONGTYPE is not no such key: %v", err)
	assert.False(t, bus.IsNoSuchKey(nil))
	assert.False(t, bus.IsNoSuchKey(errors.New("no such key")), "only a Redis reply counts")
}
