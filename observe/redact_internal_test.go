package observe

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

func TestCredentialRedactorRemovesURLAndClientCredentials(t *testing.T) {
	b, err := bus.New(bus.Config{ServiceName: "svc", RedisURL: "redis://alice:pa55word@127.0.0.1:1/0"}, nil)
	require.NoError(t, err)
	defer b.Close()
	redact := credentialRedactor(b)
	got := redact("dial redis://alice:pa55word@127.0.0.1:1: refused; AUTH pa55word failed")
	assert.NotContains(t, got, "pa55word")
	assert.Equal(t, "dial redis://xxxxx@127.0.0.1:1: refused; AUTH xxxxx failed", got)

	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", Password: "t0ps3cret"})
	defer c.Close()
	b2, err := bus.New(bus.Config{ServiceName: "svc", Client: c}, nil)
	require.NoError(t, err)
	defer b2.Close()
	assert.Equal(t, "AUTH xxxxx", credentialRedactor(b2)("AUTH t0ps3cret"))
}
