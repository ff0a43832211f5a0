package main_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/shared-infra/eventbus/internal/redistest"
)

// jwksKey is an ES256 signing key served in a test JWKS under kid.
type jwksKey struct {
	kid string
	key *ecdsa.PrivateKey
}

func newJWKSKey(t *testing.T, kid string) jwksKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return jwksKey{kid, k}
}

func (k jwksKey) token(t *testing.T, sub string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"sub": sub, "rooms": []string{"lobby"}, "iss": "https://idp.test", "exp": time.Now().Add(time.Hour).Unix(),
	})
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// serveJWKS serves the public halves of the keys set last.
func serveJWKS(t *testing.T) (*httptest.Server, func(...jwksKey)) {
	var mu sync.Mutex
	var body []byte
	set := func(keys ...jwksKey) {
		var ms []jwkset.JWKMarshal
		for _, k := range keys {
			j, err := jwkset.NewJWKFromKey(&k.key.PublicKey, jwkset.JWKOptions{
				Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: jwkset.AlgES256, USE: jwkset.UseSig},
			})
			if err != nil {
				t.Fatal(err)
			}
			ms = append(ms, j.Marshal())
		}
		b, err := json.Marshal(jwkset.JWKSMarshal{Keys: ms})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		body = b
		mu.Unlock()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, set
}

// streamCode opens GET /v1/stream with tok and returns its status.
func streamCode(t *testing.T, ctx context.Context, base, tok string) int {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/stream?access_token="+url.QueryEscape(tok), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

// TestServeJWKS: serve configured by EVENTBUS_JWKS_URL (env only for the
// keys) accepts ES256 tokens of the set's key, follows a rotation to a new
// kid and then refuses the removed key; `token check --jwks-url` agrees.
func TestServeJWKS(t *testing.T) {
	t.Parallel()
	_, _, global := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	a, b := newJWKSKey(t, "key-a"), newJWKSKey(t, "key-b")
	jwks, set := serveJWKS(t)
	set(a)
	env := []string{
		"REDIS_URL=" + redistest.URL(), "EVENTBUS_API_KEYS=jwks-key-0123456789abcdef",
		"EVENTBUS_JWKS_URL=" + jwks.URL, "EVENTBUS_JWKS_UNKNOWN_KID_REFRESH=1ms", "EVENTBUS_JWT_ISSUER=https://idp.test",
	}
	s := startServe(t, ctx, env, with(global, "serve", "--listen", "127.0.0.1:0")...)
	defer s.stop(t)
	waitReady(t, s.base)

	if code := streamCode(t, ctx, s.base, a.token(t, "alice")); code != http.StatusOK {
		t.Fatalf("token of key A: %d, want 200; stderr:\n%s", code, s.stderr())
	}
	// The provider rotates to B and drops A: B's unknown kid makes serve
	// fetch the set, which no longer holds A.
	set(b)
	if code := streamCode(t, ctx, s.base, b.token(t, "bob")); code != http.StatusOK {
		t.Fatalf("token of the new key B: %d, want 200", code)
	}
	if code := streamCode(t, ctx, s.base, a.token(t, "alice")); code != http.StatusUnauthorized {
		t.Fatalf("token of the removed key A: %d, want 401", code)
	}

	// token check verifies with the same set (env and flag alike).
	cmd := func(args ...string) result {
		return cliEnv(t, env, args...)
	}
	out := cmd("token", "check", b.token(t, "bob")).ok(t).stdout
	if !strings.Contains(out, `"user":"bob"`) {
		t.Errorf("token check: %s", out)
	}
	cmd("token", "check", a.token(t, "alice")).failsWith(t, 1, "token refused", "kid")
	down := httptest.NewServer(http.NotFoundHandler())
	defer down.Close()
	cmd("token", "check", "--jwks-url", down.URL, b.token(t, "bob")).failsWith(t, 1, "--jwks-url", "404")
}

// cliEnv runs the binary with env added to the test's environment.
func cliEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return cliEnvIn(t, "", env, args...)
}

// cliEnvIn is cliEnv with stdin as the binary's standard input.
func cliEnvIn(t *testing.T, stdin string, env []string, args ...string) result {
	t.Helper()
	c := exec.CommandContext(t.Context(), binary, args...)
	c.Env = childEnv(env...)
	c.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestServeHelpListsJWKS: --help names the JWKS flags and their variables.
func TestServeHelpListsJWKS(t *testing.T) {
	t.Parallel()
	out := cli(t, "", "serve", "--help").ok(t).stdout
	for _, w := range []string{"--jwks-url", "$EVENTBUS_JWKS_URL", "$EVENTBUS_JWKS_REFRESH", "$EVENTBUS_JWKS_UNKNOWN_KID_REFRESH"} {
		if !strings.Contains(out, w) {
			t.Errorf("serve --help does not mention %s", w)
		}
	}
}
