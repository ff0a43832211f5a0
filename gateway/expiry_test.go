package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
)

// A stream ends when its token expires, with a "token-expired" message that
// says where to resume; the same token is then refused, and a new one
// resumes from the lastEventId it carried.
func TestStreamEndsAtTokenExp(t *testing.T) {
	e := newEnv(t, envOpts{})
	exp := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second) // 2-3 s from now, whole seconds as exp is
	tok := sign(t, jwt.SigningMethodHS256, testSecret, claims("alice", jwt.MapClaims{"exp": exp.Unix()}))
	c := e.connect(tok, "", "")
	waitFor(t, wait, "the stream", func() bool { return e.gw.Clients() == 1 })
	id := e.publish("photo.uploaded", payload{"before exp"}, bus.WithUser("alice"))

	var got []sseMsg
	var expired *sseMsg
	for expired == nil {
		m, ok := c.next(wait, false)
		require.True(t, ok, "the stream ended without a %q message; got %v", gateway.TokenExpiredEvent, got)
		if m.Event == gateway.TokenExpiredEvent {
			expired = &m
			break
		}
		if !m.IDOnly {
			got = append(got, m)
		}
	}
	require.Len(t, got, 1)
	assert.Equal(t, id, ceJSON(t, got[0])["id"])
	var te gateway.TokenExpired
	require.NoError(t, json.Unmarshal([]byte(expired.Data), &te))
	assert.Equal(t, exp.UTC(), te.Expired)
	assert.Equal(t, got[0].ID, te.LastEventID, "lastEventId is the last event sent")
	assert.Contains(t, te.Message, "new token")
	_, more := c.next(wait, true)
	assert.False(t, more, "nothing after the token-expired message: the stream is closed")
	waitFor(t, wait, "the stream to go", func() bool { return e.gw.Clients() == 0 })

	// The expired token is refused; a new one resumes from lastEventId.
	_, resp := e.dial(tok, "", "", nil)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	id2 := e.publish("photo.uploaded", payload{"after exp"}, bus.WithUser("alice"))
	c2 := e.connect(e.token("alice"), "", te.LastEventID)
	m, ok := c2.next(wait, false)
	require.True(t, ok)
	assert.Equal(t, id2, ceJSON(t, m)["id"], "the resumed stream starts after lastEventId")
}

// Every stream starts with a "retry:" drawn from [Retry, 2*Retry), and on
// shutdown gets one from [Retry, Retry+ShutdownRetry) before the closing
// comment.
func TestStreamRetryJitter(t *testing.T) {
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.Retry = time.Second
		c.ShutdownRetry = 20 * time.Second
	}})
	const n = 6
	conns := make([]*sseConn, n)
	first := map[int]bool{}
	for i := range conns {
		conns[i] = e.connect(e.token("alice"), "", "")
		m, ok := conns[i].next(wait, true)
		require.True(t, ok)
		require.True(t, m.IsComment, "the hello comment first, got %+v", m)
		m, ok = conns[i].next(wait, true)
		require.True(t, ok)
		require.True(t, m.IsRetry, "a retry: second, got %+v", m)
		assert.GreaterOrEqual(t, m.Retry, 1000)
		assert.Less(t, m.Retry, 2000)
		first[m.Retry] = true
	}
	assert.Greater(t, len(first), 1, "the %d streams all got the same retry %v: no jitter", n, first)

	waitFor(t, wait, "the streams", func() bool { return e.gw.Clients() == n })
	require.NoError(t, e.gw.Close())
	last := map[int]bool{}
	for _, c := range conns {
		retry := -1
		var closing string
		for {
			m, ok := c.next(wait, true)
			if !ok {
				break
			}
			if m.IsRetry {
				retry = m.Retry
			}
			if m.IsComment {
				closing = m.Comment
			}
		}
		assert.Contains(t, closing, "shutting down")
		assert.GreaterOrEqual(t, retry, 1000, "a retry: before the shutdown comment")
		assert.Less(t, retry, 21000)
		last[retry] = true
	}
	assert.Greater(t, len(last), 1, "the shutdown retries %v have no jitter", last)
}
