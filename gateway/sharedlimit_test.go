package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/gateway"
)

// Two gateways on one Redis share each principal's bucket: with a burst of
// 3 (and a refill too slow to matter), 3 requests pass across both, the
// rest get 429 from either; another principal has its own bucket. With
// PerProcess each gateway would allow 3.
func TestRateLimitSharedAcrossGateways(t *testing.T) {
	rl := gateway.RateLimit{PerSecond: 0.001, Burst: 3}
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) { c.RateLimit = rl }})
	cfg := gateway.Config{
		Auth:      gateway.AuthConfig{HMACSecret: testSecret},
		Ingress:   gateway.IngressConfig{APIKeys: []string{testAPIKey, "second-api-key-0123456789"}},
		RateLimit: rl,
	}
	g2, err := gateway.New(e.bus, cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = g2.Close() })
	srv2 := httptest.NewServer(g2.Handler())
	t.Cleanup(srv2.Close)

	post := func(base, key, id string) int {
		req, _ := http.NewRequest(http.MethodPost, base+gateway.EventsPath,
			strings.NewReader(`{"specversion":"1.0","id":"`+id+`","source":"t","type":"rl.e","data":{}}`))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/cloudevents+json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	var got []int
	for i, base := range []string{e.srv.URL, srv2.URL, e.srv.URL, srv2.URL, e.srv.URL, srv2.URL} {
		got = append(got, post(base, testAPIKey, "rl-"+string(rune('a'+i))))
	}
	require.Equal(t, []int{202, 202, 202, 429, 429, 429}, got, "one bucket of 3 across the two gateways")

	// apikey#0 on the first gateway and on the second is the same principal
	// (the index of the key): a different key is a different principal.
	require.Equal(t, http.StatusAccepted, post(srv2.URL, "second-api-key-0123456789", "rl-other"))
}
