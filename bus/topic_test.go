package bus_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

func TestValidateType(t *testing.T) {
	long := make([]byte, 256)
	for i := range long {
		long[i] = 'a'
	}
	cases := []struct {
		in      string
		wantErr string
	}{
		{"photo.uploaded", ""},
		{"photo.processing.completed", ""},
		{"a", ""},
		{"a_b-c.0", ""},
		{string(long[:255]), ""},
		{"", "must not be empty"},
		{string(long), "the limit is 255"},
		{"Photo.uploaded", "upper case"},
		{"photo..x", "empty token"},
		{".photo", "empty token"},
		{"photo.", "empty token"},
		{"photo.*", "wildcard"},
		{"photo.>", "wildcard"},
		{"photo uploaded", "tokens must match"},
		{"photo:uploaded", "tokens must match"},
		{"фото", "tokens must match"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			err := bus.ValidateType(c.in)
			if c.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, bus.ErrInvalidType))
			assert.Contains(t, err.Error(), c.wantErr)
		})
	}
}

func TestValidatePattern(t *testing.T) {
	valid := []string{">", "*", "*.*", "photo.*", "photo.>", "*.uploaded", "photo.*.completed", "photo.uploaded", "*.>"}
	for _, p := range valid {
		assert.NoError(t, bus.ValidatePattern(p), p)
	}
	invalid := map[string]string{
		"photo.>.x": "only be the last token",
		">.x":       "only be the last token",
		"photo..x":  "empty token",
		"Photo.*":   "upper case",
		"photo.a*":  "tokens must match",
		"photo.>>":  "tokens must match",
		"":          "must not be empty",
	}
	for p, want := range invalid {
		err := bus.ValidatePattern(p)
		require.Error(t, err, p)
		assert.ErrorIs(t, err, bus.ErrInvalidPattern)
		assert.Contains(t, err.Error(), want, p)
		assert.Contains(t, err.Error(), "a token may be \"*\"", "the error explains the syntax")
	}
}

func TestMatch(t *testing.T) {
	cases := []struct {
		pattern, typ string
		want         bool
	}{
		{"photo.*", "photo.uploaded", true},
		{"photo.*", "photo.processing.completed", false},
		{"photo.*", "photo", false},
		{"photo.>", "photo.uploaded", true},
		{"photo.>", "photo.processing.completed", true},
		{"photo.>", "photo", false},
		{"photo.>", "photos.uploaded", false},
		{">", "photo", true},
		{">", "photo.uploaded.x", true},
		{"*", "photo", true},
		{"*", "photo.uploaded", false},
		{"*.*", "photo.uploaded", true},
		{"*.*", "photo", false},
		{"*.*", "photo.a.b", false},
		{"*.uploaded", "photo.uploaded", true},
		{"*.uploaded", "video.uploaded", true},
		{"*.uploaded", "photo.deleted", false},
		{"photo.*.completed", "photo.processing.completed", true},
		{"photo.*.completed", "photo.processing.failed", false},
		{"photo.uploaded", "photo.uploaded", true},
		{"photo.uploaded", "photo.uploaded2", false},
		{"photo.uploaded", "photo", false},
		{"photo", "photo.uploaded", false},
		{"*.>", "photo", false},
		{"*.>", "photo.x", true},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, bus.Match(c.pattern, c.typ), "Match(%q, %q)", c.pattern, c.typ)
	}
}

func TestIsPattern(t *testing.T) {
	assert.True(t, bus.IsPattern("photo.*"))
	assert.True(t, bus.IsPattern(">"))
	assert.False(t, bus.IsPattern("photo.uploaded"))
	assert.False(t, bus.IsPattern("photo.a*"))
}
