package redistest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEscapeGlob(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"test:plain-0123abcd:", "test:plain-0123abcd:"},
		{`a*b?c[d]e\f`, `a\*b\?c\[d\]e\\f`},
		{"", ""},
		{"ü^-{}", "ü^-{}"},
	} {
		assert.Equal(t, tc.want, escapeGlob(tc.in), "escapeGlob(%q)", tc.in)
	}
}

// TestDeletePrefixIsLiteral shows that a prefix with glob characters deletes
// only keys that start with it literally, not keys its unescaped form matches.
func TestDeletePrefixIsLiteral(t *testing.T) {
	c := Client(t)
	ctx := t.Context()
	base := Prefix(t) // cleans up whatever is left
	prefix := base + `glob*?[ab]\-`
	decoy := base + `globZZQa-decoy` // matched by the unescaped pattern
	keys := []string{prefix + "1", prefix + "2"}
	for _, k := range append(keys, decoy) {
		require.NoError(t, c.Set(ctx, k, "v", 0).Err())
	}

	require.NoError(t, deletePrefix(prefix))

	for _, k := range keys {
		assert.Zero(t, c.Exists(ctx, k).Val(), "key %q not deleted", k)
	}
	assert.Equal(t, int64(1), c.Exists(context.Background(), decoy).Val(), "decoy %q deleted", decoy)
}
