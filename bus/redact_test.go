package bus_test

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"

	"github.com/shared-infra/eventbus/bus"
)

// Redactor is the one redaction of Redis credentials: the URL's user info
// and passwords (even when the URL does not parse) and the client's.
func TestRedactor(t *testing.T) {
	redact := bus.Redactor("redis://alice:pa55word@127.0.0.1:1/0", nil)
	assert.Equal(t, "dial redis://xxxxx@127.0.0.1:1: refused; AUTH xxxxx failed",
		redact("dial redis://alice:pa55word@127.0.0.1:1: refused; AUTH pa55word failed"))

	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", Password: "t0ps3cret"})
	defer c.Close()
	assert.Equal(t, "AUTH xxxxx", bus.Redactor("", c)("AUTH t0ps3cret"))

	sentinel := "redis://:dat4pw@s1:26379/0?master_name=m&addr=s2:26379&sentinel_password=s3ntinel"
	assert.Equal(t, "xxxxx and xxxxx", bus.Redactor(sentinel, nil)("dat4pw and s3ntinel"))

	// Not a URL Go parses: the user info is still found.
	assert.Equal(t, "parse redis://xxxxx@[::1: missing ']'",
		bus.Redactor("redis://bob:s3cret@[::1", nil)("parse redis://bob:s3cret@[::1: missing ']'"))

	assert.Equal(t, "nothing to hide", bus.Redactor("redis://127.0.0.1:6379/0", nil)("nothing to hide"))
}
