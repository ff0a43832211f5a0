package gateway_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/internal/redistest"
)

func testBus(t *testing.T) *bus.Bus {
	t.Helper()
	b, err := bus.New(bus.Config{ServiceName: "gw-test", Client: redistest.Client(t), StreamPrefix: redistest.Prefix(t)}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// Validate reports every problem at once.
func TestConfigValidate(t *testing.T) {
	b := testBus(t)
	_, err := gateway.New(b, gateway.Config{
		RateLimit:      gateway.RateLimit{PerSecond: -3, Burst: -1},
		ClientBuffer:   -1,
		WriteTimeout:   -time.Second,
		AllowedOrigins: []string{""},
	}, nil)
	require.Error(t, err)
	for _, want := range []string{
		"no verification key", "no credential accepted", "RateLimit.PerSecond", "RateLimit.Burst",
		"ClientBuffer", "WriteTimeout", "AllowedOrigins[0]",
	} {
		assert.Contains(t, err.Error(), want)
	}

	_, err = gateway.New(nil, gateway.Config{}, nil)
	assert.ErrorContains(t, err, "bus is nil")

	// IngressJWT alone is enough for ingress; defaults fill the rest.
	g, err := gateway.New(b, gateway.Config{Auth: gateway.AuthConfig{HMACSecret: testSecret}, IngressJWT: true}, watermill.NopLogger{})
	require.NoError(t, err)
	cfg := g.Config()
	assert.Equal(t, gateway.DefaultListenAddr, cfg.ListenAddr)
	assert.Equal(t, int64(gateway.DefaultMaxBodyBytes), cfg.MaxBodyBytes)
	assert.Equal(t, gateway.DefaultHeartbeatInterval, cfg.HeartbeatInterval)
	assert.Equal(t, gateway.DefaultClientBuffer, cfg.ClientBuffer)
	assert.Equal(t, gateway.RateLimit{PerSecond: gateway.DefaultRatePerSecond, Burst: gateway.DefaultRateBurst}, cfg.RateLimit)
	require.NoError(t, g.Close())
	require.NoError(t, g.Close())
}

// Mounted handlers share the mux and the CORS policy.
func TestMountAndCORS(t *testing.T) {
	e := newEnv(t, envOpts{
		gw:               func(c *gateway.Config) { c.AllowedOrigins = []string{"https://app.example.com"} },
		uncheckedBecause: "it mounts a plain-text /healthz the document does not describe",
	})
	e.gw.Mount("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	resp, err := http.Get(e.srv.URL + "/healthz")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "ok", string(b))

	req, _ := http.NewRequest(http.MethodOptions, e.srv.URL+gateway.EventsPath, nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, "https://app.example.com", resp.Header.Get("Access-Control-Allow-Origin"))

	// The wrong method on an endpoint is 405.
	resp, err = http.Get(e.srv.URL + gateway.EventsPath)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

// Serve runs the reader and the server until ctx ends, then stops both.
func TestServe(t *testing.T) {
	b := testBus(t)
	g, err := gateway.New(b, gateway.Config{
		Auth:      gateway.AuthConfig{HMACSecret: testSecret},
		Ingress:   gateway.IngressConfig{APIKeys: []string{testAPIKey}},
		ReadBlock: 50 * time.Millisecond,
	}, nil)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- g.Serve(ctx, ln) }()
	<-g.Running()

	req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+gateway.EventsPath,
		strings.NewReader(`{"specversion":"1.0","id":"s1","type":"good.event","source":"s"}`))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	req.Header.Set("Content-Type", gateway.ContentTypeStructured)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)

	cancel()
	select {
	case err := <-served:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	assert.True(t, errors.Is(g.Run(context.Background()), gateway.ErrGatewayClosed))
}

func TestSSEWriterWriteID(t *testing.T) {
	rec := httptest.NewRecorder()
	s, err := gateway.NewSSEWriter(rec)
	require.NoError(t, err)
	require.NoError(t, s.WriteID("17-3"))
	assert.Equal(t, "id: 17-3\n\n", rec.Body.String())
	assert.Error(t, s.WriteID(""))
	assert.Error(t, s.WriteID("1\n2"))
}
