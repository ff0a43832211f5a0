package rediskeys_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/internal/rediskeys"
	"github.com/shared-infra/eventbus/internal/redistest"
)

func TestEscapeGlob(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"test:plain-0123abcd:", "test:plain-0123abcd:"},
		{`a*b?c[d]e\f`, `a\*b\?c\[d\]e\\f`},
		{"", ""},
		{"ü^-{}", "ü^-{}"},
	} {
		assert.Equal(t, tc.want, rediskeys.EscapeGlob(tc.in), "EscapeGlob(%q)", tc.in)
		assert.Equal(t, tc.want+"*", rediskeys.Pattern(tc.in), "Pattern(%q)", tc.in)
	}
}

// TestDeletePrefixIsLiteral shows that a prefix with glob characters deletes
// only keys that start with it literally, not keys its unescaped form matches,
// and that it pages through more keys than one SCAN returns.
func TestDeletePrefixIsLiteral(t *testing.T) {
	c := redistest.Client(t)
	ctx := t.Context()
	base := redistest.Prefix(t) // cleans up whatever is left
	prefix := base + `glob*?[ab]\-`
	decoy := base + `globZZQa-decoy` // matched by the unescaped pattern
	var keys []string
	for i := range 2*rediskeys.ScanCount + 7 {
		keys = append(keys, prefix+strconv.Itoa(i))
	}
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range append(keys, decoy) {
			p.Set(ctx, k, "v", 0)
		}
		return nil
	})
	require.NoError(t, err)

	require.NoError(t, rediskeys.DeletePrefix(ctx, c, prefix))

	for _, k := range keys {
		require.Zero(t, c.Exists(ctx, k).Val(), "key %q not deleted", k)
	}
	assert.Equal(t, int64(1), c.Exists(context.Background(), decoy).Val(), "decoy %q deleted", decoy)
}

func TestDeletePrefixUnsupportedClient(t *testing.T) {
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	t.Cleanup(func() { _ = ring.Close() })
	err := rediskeys.DeletePrefix(t.Context(), ring, "x:")
	assert.True(t, errors.Is(err, rediskeys.ErrUnsupportedClient), "got %v", err)
}
