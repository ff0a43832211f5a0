package gateway_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/gateway"
)

// jwksServer serves a JSON Web Key Set that a test changes (a key
// rotation), and counts the fetches.
type jwksServer struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []jwkset.JWKMarshal
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{t: t}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		body, err := json.Marshal(jwkset.JWKSMarshal{Keys: s.keys})
		s.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		s.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// jwk is one key of a set: the public half of a signing key (or, for an
// HMAC secret, the secret itself) with its kid and alg.
type jwk struct {
	kid  string
	alg  jwt.SigningMethod
	sign any // the private key (or secret) tokens are signed with
}

// set replaces the served keys.
func (s *jwksServer) set(keys ...jwk) {
	s.t.Helper()
	var ms []jwkset.JWKMarshal
	for _, k := range keys {
		pub := k.sign
		private := false
		if p, ok := k.sign.(interface{ Public() crypto.PublicKey }); ok {
			pub = p.Public()
		} else {
			private = true // an oct key has no public half
		}
		j, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{
			Marshal:  jwkset.JWKMarshalOptions{Private: private},
			Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: jwkset.ALG(k.alg.Alg()), USE: jwkset.UseSig},
			Validate: jwkset.JWKValidateOptions{SkipAll: true}, // lets the test serve a weak RSA key
		})
		require.NoError(s.t, err)
		ms = append(ms, j.Marshal())
	}
	s.mu.Lock()
	s.keys = ms
	s.mu.Unlock()
}

// token signs a browser token with k, its kid in the header (none when
// withKID is false).
func (k jwk) token(t *testing.T, sub string, withKID bool) string {
	t.Helper()
	tok := jwt.NewWithClaims(k.alg, claims(sub, jwt.MapClaims{"rooms": []string{"lobby"}}))
	if withKID {
		tok.Header["kid"] = k.kid
	}
	s, err := tok.SignedString(k.sign)
	require.NoError(t, err)
	return s
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

// rsaKeyB is the second RSA key of the rotation tests (rsaKey is the first).
var rsaKeyB = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// streamStatus opens GET /v1/stream with tok and returns the status and,
// for a refusal, the body.
func (e *env) streamStatus(tok string) (int, string) {
	e.t.Helper()
	c, resp := e.dial(tok, "", "", nil)
	defer c.close()
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestJWKSRotation: the gateway verifies RS256 and ES256 tokens with the
// keys of a JWKS served over HTTP, follows a rotation (a token of the new
// key's kid makes it fetch the set again) and, once the set was fetched
// again without the old key, refuses the old key's tokens; HS256 tokens
// keep working beside it.
func TestJWKSRotation(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b jwk
	}{
		{"RS256", jwk{"rsa-a", jwt.SigningMethodRS256, rsaKey()}, jwk{"rsa-b", jwt.SigningMethodRS256, rsaKeyB()}},
		{"ES256", jwk{"ec-a", jwt.SigningMethodES256, ecKey(t)}, jwk{"ec-b", jwt.SigningMethodES256, ecKey(t)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js := newJWKSServer(t)
			js.set(tc.a)
			e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
				c.Auth.JWKS = gateway.JWKSConfig{
					URL:                js.srv.URL,
					RefreshInterval:    time.Hour, // only unknown kids make it fetch here
					UnknownKIDInterval: time.Millisecond,
				}
			}})
			require.EqualValues(t, 1, js.fetches.Load(), "New fetches the set once")

			st, body := e.streamStatus(tc.a.token(t, "alice", true))
			require.Equal(t, http.StatusOK, st, body)
			st, body = e.streamStatus(e.token("hs-user", "lobby"))
			require.Equal(t, http.StatusOK, st, "HS256 beside the JWKS: %s", body)
			require.EqualValues(t, 1, js.fetches.Load(), "a known kid needs no fetch")

			// Rotation: the provider publishes B beside A and signs with B.
			js.set(tc.a, tc.b)
			st, body = e.streamStatus(tc.b.token(t, "bob", true))
			require.Equal(t, http.StatusOK, st, "a new kid is fetched: %s", body)
			require.EqualValues(t, 2, js.fetches.Load())
			st, body = e.streamStatus(tc.a.token(t, "alice", true))
			require.Equal(t, http.StatusOK, st, "A is still in the set: %s", body)

			// A is removed. Until the set is fetched again A is held;
			// a token of an unknown kid makes the gateway fetch it.
			js.set(tc.b)
			st, _ = e.streamStatus(tc.a.token(t, "alice", true))
			require.Equal(t, http.StatusOK, st, "A is held until the next fetch")
			unknown := jwk{"nobody", tc.a.alg, tc.a.sign}
			st, body = e.streamStatus(unknown.token(t, "mallory", true))
			require.Equal(t, http.StatusUnauthorized, st)
			require.Contains(t, body, "kid")
			require.EqualValues(t, 3, js.fetches.Load(), "the unknown kid fetched the set again")

			st, body = e.streamStatus(tc.a.token(t, "alice", true))
			require.Equal(t, http.StatusUnauthorized, st, "A was removed from the set")
			require.Contains(t, body, "kid")
			st, body = e.streamStatus(tc.b.token(t, "bob", true))
			require.Equal(t, http.StatusOK, st, body)
			st, body = e.streamStatus(tc.b.token(t, "bob", false))
			require.Equal(t, http.StatusOK, st, "a token without kid is tried against every key: %s", body)
		})
	}
}

// TestJWKSPeriodicRefresh: a key removed from the set stops verifying
// tokens once the periodic refresh fetched the set again, with no token
// asking for it.
func TestJWKSPeriodicRefresh(t *testing.T) {
	a := jwk{"ec-a", jwt.SigningMethodES256, ecKey(t)}
	b := jwk{"ec-b", jwt.SigningMethodES256, ecKey(t)}
	js := newJWKSServer(t)
	js.set(a)
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.Auth.JWKS = gateway.JWKSConfig{URL: js.srv.URL, RefreshInterval: 20 * time.Millisecond, UnknownKIDInterval: time.Hour}
	}})
	st, body := e.streamStatus(a.token(t, "alice", true))
	require.Equal(t, http.StatusOK, st, body)

	js.set(b)
	n := js.fetches.Load()
	// Two fetches after the change: the first one began after it, and
	// the refresh goroutine fetches one at a time, so it has been applied.
	require.Eventually(t, func() bool { return js.fetches.Load() >= n+2 }, 20*time.Second, 5*time.Millisecond)
	st, _ = e.streamStatus(a.token(t, "alice", true))
	require.Equal(t, http.StatusUnauthorized, st, "A was removed from the set")
	st, body = e.streamStatus(b.token(t, "bob", true))
	require.Equal(t, http.StatusOK, st, body)
}

// TestJWKSRefusesWrongKeys: a set's HMAC key is never used for HS256 (that
// is AuthConfig.HMACSecret's), an RSA key of the set below 2048 bits is
// refused, and an RS256 token is not verified with an EC key.
func TestJWKSRefusesWrongKeys(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	oct := jwk{"hmac", jwt.SigningMethodHS256, []byte("a-secret-in-the-key-set-0123456789abcdef")}
	weakKey := jwk{"weak", jwt.SigningMethodRS256, weak}
	ec := jwk{"ec", jwt.SigningMethodES256, ecKey(t)}
	js := newJWKSServer(t)
	js.set(oct, weakKey, ec)
	e := newEnv(t, envOpts{gw: func(c *gateway.Config) {
		c.Auth.JWKS = gateway.JWKSConfig{URL: js.srv.URL, RefreshInterval: time.Hour, UnknownKIDInterval: time.Hour}
	}})
	st, body := e.streamStatus(ec.token(t, "alice", true))
	require.Equal(t, http.StatusOK, st, body)

	// Ingress (IngressJWT) takes the set's tokens that grant publishing.
	pubTok := jwt.NewWithClaims(jwt.SigningMethodES256, claims("svc", jwt.MapClaims{"publish": true}))
	pubTok.Header["kid"] = ec.kid
	signed, err := pubTok.SignedString(ec.sign)
	require.NoError(t, err)
	resp, rb := e.post("application/cloudevents+json", `{"specversion":"1.0","id":"j-1","source":"t","type":"jwks.job","data":{}}`,
		map[string]string{"Authorization": "Bearer " + signed})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, string(rb))

	st, body = e.streamStatus(oct.token(t, "mallory", true))
	require.Equal(t, http.StatusUnauthorized, st, "HS256 with a key of the set")
	require.Contains(t, body, "signature")
	st, _ = e.streamStatus(weakKey.token(t, "mallory", true))
	require.Equal(t, http.StatusUnauthorized, st, "RSA key below 2048 bits")
	st, _ = e.streamStatus(weakKey.token(t, "mallory", false))
	require.Equal(t, http.StatusUnauthorized, st, "RSA key below 2048 bits, no kid")
	// An RS256 token naming the EC key's kid: the key types do not match.
	confused := jwk{"ec", jwt.SigningMethodRS256, rsaKey()}
	st, body = e.streamStatus(confused.token(t, "mallory", true))
	require.Equal(t, http.StatusUnauthorized, st, "RS256 token with an EC key's kid")
	require.Contains(t, body, "its alg is another")

	// Unknown kids cannot make the gateway hammer the provider: the
	// first fetches the set again, the next ones within
	// UnknownKIDInterval are refused without a fetch.
	n := js.fetches.Load()
	stranger := jwk{"stranger-1", jwt.SigningMethodES256, ecKey(t)}
	st, body = e.streamStatus(stranger.token(t, "mallory", true))
	require.Equal(t, http.StatusUnauthorized, st)
	require.Contains(t, body, "does not hold, even after fetching it again")
	require.Equal(t, n+1, js.fetches.Load())
	for i := range 5 {
		stranger.kid = "stranger-" + string(rune('2'+i))
		st, body = e.streamStatus(stranger.token(t, "mallory", true))
		require.Equal(t, http.StatusUnauthorized, st)
		require.Contains(t, body, "fetched again too recently")
	}
	require.Equal(t, n+1, js.fetches.Load(), "no fetch for the later unknown kids")
}

// TestJWKSConfigValidate: the URL must be http(s), durations not negative;
// a set that cannot be fetched at first does not stop New.
func TestJWKSConfigValidate(t *testing.T) {
	for _, u := range []string{"ftp://idp/keys", "not a url", "https://"} {
		err := gateway.AuthConfig{JWKS: gateway.JWKSConfig{URL: u}}.Validate()
		require.ErrorContains(t, err, "JWKS.URL", u)
	}
	err := gateway.AuthConfig{JWKS: gateway.JWKSConfig{URL: "https://idp.example.com/keys", RefreshInterval: -time.Second}}.Validate()
	require.ErrorContains(t, err, "JWKS.RefreshInterval")
	require.NoError(t, gateway.AuthConfig{JWKS: gateway.JWKSConfig{URL: "https://idp.example.com/keys"}}.Validate())

	down := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(down.Close)
	var errs atomic.Int64
	a, err := gateway.NewAuthenticator(gateway.AuthConfig{JWKS: gateway.JWKSConfig{
		URL: down.URL, UnknownKIDInterval: time.Hour, OnRefreshError: func(error) { errs.Add(1) },
	}})
	require.NoError(t, err)
	defer a.Close()
	require.EqualValues(t, 1, errs.Load(), "the failed first fetch is reported")
	_, err = a.Verify(jwk{"ec", jwt.SigningMethodES256, ecKey(t)}.token(t, "alice", true))
	require.ErrorIs(t, err, gateway.ErrBadCredentials)
}
