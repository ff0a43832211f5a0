package gateway_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/shared-infra/eventbus/gateway"
)

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")
	otherKey   = []byte("fedcba9876543210fedcba9876543210-other-secret")
)

// rsaKey is generated once per test binary: 2048-bit generation is slow.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

func claims(sub string, extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}
	if sub != "" {
		c["sub"] = sub
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

func bearerReq(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/events", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

func queryReq(tok string) *http.Request {
	return httptest.NewRequest(http.MethodGet, "/events?"+gateway.AccessTokenParam+"="+url.QueryEscape(tok), nil)
}

func newAuth(t *testing.T, cfg gateway.AuthConfig) *gateway.Authenticator {
	t.Helper()
	a, err := gateway.NewAuthenticator(cfg)
	if err != nil {
		t.Fatalf("NewAuthenticator: %v", err)
	}
	return a
}

// checkNoLeak fails if err's text contains the token, any of its three
// segments, or a secret.
func checkNoLeak(t *testing.T, err error, tok string, secrets ...[]byte) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	parts := []string{tok}
	if tok != "" {
		parts = append(parts, strings.Split(tok, ".")...)
	}
	for _, p := range parts {
		if len(p) >= 8 && strings.Contains(msg, p) {
			t.Errorf("error %q contains (part of) the token", msg)
		}
	}
	for _, s := range secrets {
		if strings.Contains(msg, string(s)) {
			t.Errorf("error %q contains a secret", msg)
		}
	}
}

func TestAuthConfigValidate(t *testing.T) {
	if err := (gateway.AuthConfig{}).Validate(); err == nil || !strings.Contains(err.Error(), "HMACSecret") {
		t.Fatalf("empty config: got %v, want an error naming HMACSecret/RSAPublicKey", err)
	}
	bad := gateway.AuthConfig{
		HMACSecret:   []byte("short"),
		RSAPublicKey: &rsa.PublicKey{N: big.NewInt(1<<62 - 57), E: 65537},
		Leeway:       -time.Second,
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad config: no error")
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 3 {
		t.Fatalf("bad config: want 3 joined errors, got %q", err)
	}
	for _, want := range []string{"HMACSecret is 5 bytes", "RSAPublicKey is 62 bits", "Leeway is -1s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "short") {
		t.Errorf("error %q contains the secret", err)
	}
	if _, err := gateway.NewAuthenticator(bad); err == nil {
		t.Error("NewAuthenticator accepted a bad config")
	}
	good := gateway.AuthConfig{HMACSecret: testSecret, RSAPublicKey: &rsaKey().PublicKey}
	if err := good.Validate(); err != nil {
		t.Errorf("good config: %v", err)
	}
}

func TestAuthenticateHS256(t *testing.T) {
	a := newAuth(t, gateway.AuthConfig{HMACSecret: testSecret})
	tok := sign(t, jwt.SigningMethodHS256, testSecret, claims("alice", jwt.MapClaims{"rooms": []string{"r1", "r2"}}))

	for name, r := range map[string]*http.Request{"header": bearerReq(tok), "query": queryReq(tok)} {
		t.Run(name, func(t *testing.T) {
			p, err := a.Authenticate(r)
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if p.User != "alice" || !slices.Equal(p.Rooms, []string{"r1", "r2"}) {
				t.Fatalf("principal = %+v", p)
			}
		})
	}

	t.Run("lowercase scheme", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "bearer "+tok)
		if _, err := a.Authenticate(r); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("header wins over query", func(t *testing.T) {
		r := queryReq("garbage")
		r.Header.Set("Authorization", "Bearer "+tok)
		if p, err := a.Authenticate(r); err != nil || p.User != "alice" {
			t.Fatalf("got %+v, %v", p, err)
		}
	})

	t.Run("no rooms claim", func(t *testing.T) {
		p, err := a.Authenticate(bearerReq(sign(t, jwt.SigningMethodHS256, testSecret, claims("bob", nil))))
		if err != nil || p.User != "bob" || len(p.Rooms) != 0 {
			t.Fatalf("got %+v, %v", p, err)
		}
	})
}

func TestAuthenticateRS256(t *testing.T) {
	key := rsaKey()
	a := newAuth(t, gateway.AuthConfig{RSAPublicKey: &key.PublicKey, Issuer: "https://auth.test", Audience: "eventbus"})
	tok := sign(t, jwt.SigningMethodRS256, key, claims("carol", jwt.MapClaims{"iss": "https://auth.test", "aud": []string{"other", "eventbus"}}))
	p, err := a.Authenticate(bearerReq(tok))
	if err != nil || p.User != "carol" {
		t.Fatalf("got %+v, %v", p, err)
	}
}

func TestAuthenticateNoCredentials(t *testing.T) {
	a := newAuth(t, gateway.AuthConfig{HMACSecret: testSecret})
	_, err := a.Authenticate(httptest.NewRequest(http.MethodGet, "/events?room=a", nil))
	if !errors.Is(err, gateway.ErrNoCredentials) || errors.Is(err, gateway.ErrBadCredentials) {
		t.Fatalf("got %v, want ErrNoCredentials", err)
	}
	if gateway.HTTPStatus(err) != http.StatusUnauthorized {
		t.Fatalf("HTTPStatus = %d", gateway.HTTPStatus(err))
	}
}

func TestAuthenticateRejects(t *testing.T) {
	key := rsaKey()
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	hsOnly := gateway.AuthConfig{HMACSecret: testSecret}
	rsOnly := gateway.AuthConfig{RSAPublicKey: &key.PublicKey}
	both := gateway.AuthConfig{HMACSecret: testSecret, RSAPublicKey: &key.PublicKey}
	strict := gateway.AuthConfig{HMACSecret: testSecret, Issuer: "https://auth.test", Audience: "eventbus"}
	past := time.Now().Add(-time.Minute).Unix()

	noneTok := func(t *testing.T) string {
		return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims("mallory", nil))
	}
	hs := func(c jwt.MapClaims) func(*testing.T) string {
		return func(t *testing.T) string { return sign(t, jwt.SigningMethodHS256, testSecret, c) }
	}

	tests := []struct {
		name string
		cfg  gateway.AuthConfig
		tok  func(*testing.T) string
		req  func(string) *http.Request // default bearerReq
		want string                     // substring of the error
	}{
		{"alg none", both, noneTok, nil, "algorithm is not accepted"},
		{"HS384 not accepted", hsOnly, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS384, testSecret, claims("mallory", nil))
		}, nil, "accepted: HS256)"},
		{"wrong HMAC secret", hsOnly, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, otherKey, claims("mallory", nil))
		}, nil, "signature is invalid"},
		{"RS256 when only HMAC configured", hsOnly, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, key, claims("mallory", nil))
		}, nil, "signature"},
		{"HS256 when only RSA configured", rsOnly, hs(claims("mallory", nil)), nil, "accepted: RS256)"},
		{"alg confusion: HS256 keyed with the RSA public key, RSA only", rsOnly, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, pubPEM, claims("mallory", nil))
		}, nil, "signature"},
		{"alg confusion: HS256 keyed with the RSA public key, both", both, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, pubPEM, claims("mallory", nil))
		}, nil, "signature"},
		{"RS256 by another key", both, func(t *testing.T) string {
			return sign(t, jwt.SigningMethodRS256, otherRSA, claims("mallory", nil))
		}, nil, "signature"},
		{"expired", hsOnly, hs(claims("alice", jwt.MapClaims{"exp": past})), nil, "expired"},
		{"expired, via query", hsOnly, hs(claims("alice", jwt.MapClaims{"exp": past})), queryReq, "expired"},
		{"not valid yet", hsOnly, hs(claims("alice", jwt.MapClaims{"nbf": time.Now().Add(time.Hour).Unix()})), nil, "not valid yet"},
		{"no exp", hsOnly, hs(claims("alice", jwt.MapClaims{"exp": nil})), nil, "required claims: exp"},
		{"no sub", hsOnly, hs(claims("", nil)), nil, "no sub"},
		{"empty sub", hsOnly, hs(claims("", jwt.MapClaims{"sub": ""})), nil, "no sub"},
		{"rooms not an array", hsOnly, hs(claims("alice", jwt.MapClaims{"rooms": "r1"})), nil, "token claim rooms is a string: want an array of strings"},
		{"rooms with a number", hsOnly, hs(claims("alice", jwt.MapClaims{"rooms": []any{"r1", 2}})), nil, "claim rooms is an array with a non-string element: want an array of strings"},
		{"exp a string", hsOnly, hs(claims("alice", jwt.MapClaims{"exp": "tomorrow"})), nil, "claim exp is a string: want a number"},
		{"sub a number", hsOnly, hs(claims("alice", jwt.MapClaims{"sub": 42})), nil, "claim sub is a number: want a string"},
		{"aud an object", hsOnly, hs(claims("alice", jwt.MapClaims{"aud": map[string]any{"x": 1}})), nil, "claim aud is an object: want a string or an array of strings"},
		{"two wrong claims", hsOnly, hs(claims("alice", jwt.MapClaims{"rooms": "r1", "iat": true})), nil, "claim iat is a boolean: want a number (seconds since 1970); claim rooms is a string"},
		{"wrong issuer", strict, hs(claims("alice", jwt.MapClaims{"iss": "https://evil.test", "aud": "eventbus"})), nil, "issuer"},
		{"missing issuer", strict, hs(claims("alice", jwt.MapClaims{"aud": "eventbus"})), nil, "required claims: iss"},
		{"missing issuer and audience", strict, hs(claims("alice", nil)), nil, "required claims: iss, aud"},
		{"wrong audience", strict, hs(claims("alice", jwt.MapClaims{"iss": "https://auth.test", "aud": "other"})), nil, "audience"},
		{"garbage", hsOnly, func(*testing.T) string { return "not-a-jwt-at-all" }, nil, "malformed"},
		{"basic scheme", hsOnly, func(*testing.T) string { return "dXNlcjpwYXNzd29yZA==" }, func(tok string) *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Authorization", "Basic "+tok)
			return r
		}, `"Bearer <token>"`},
		{"empty bearer", hsOnly, func(*testing.T) string { return "" }, bearerReq, "empty bearer"},
		{"empty access_token", hsOnly, func(*testing.T) string { return "" }, queryReq, "access_token is empty"},
		{"access_token twice", hsOnly, hs(claims("alice", nil)), func(tok string) *http.Request {
			return httptest.NewRequest(http.MethodGet, "/?access_token="+tok+"&access_token="+tok, nil)
		}, "2 times"},
		{"oversized", hsOnly, func(*testing.T) string { return strings.Repeat("a", 20000) }, nil, "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAuth(t, tt.cfg)
			tok := tt.tok(t)
			req := bearerReq
			if tt.req != nil {
				req = tt.req
			}
			p, err := a.Authenticate(req(tok))
			if !errors.Is(err, gateway.ErrBadCredentials) {
				t.Fatalf("got %+v, %v; want ErrBadCredentials", p, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			if gateway.HTTPStatus(err) != http.StatusUnauthorized {
				t.Errorf("HTTPStatus = %d, want 401", gateway.HTTPStatus(err))
			}
			checkNoLeak(t, err, tok, testSecret, otherKey, pubPEM)
		})
	}
}

func TestAuthenticateLeeway(t *testing.T) {
	tok := sign(t, jwt.SigningMethodHS256, testSecret, claims("alice", jwt.MapClaims{"exp": time.Now().Add(-5 * time.Second).Unix()}))
	if _, err := newAuth(t, gateway.AuthConfig{HMACSecret: testSecret}).Authenticate(bearerReq(tok)); !errors.Is(err, gateway.ErrBadCredentials) {
		t.Fatalf("no leeway: got %v, want ErrBadCredentials", err)
	}
	if _, err := newAuth(t, gateway.AuthConfig{HMACSecret: testSecret, Leeway: time.Minute}).Authenticate(bearerReq(tok)); err != nil {
		t.Fatalf("leeway 1m: %v", err)
	}
}

func TestAuthenticatorCopiesSecret(t *testing.T) {
	secret := slices.Clone(testSecret)
	a := newAuth(t, gateway.AuthConfig{HMACSecret: secret})
	tok := sign(t, jwt.SigningMethodHS256, testSecret, claims("alice", nil))
	secret[0] ^= 0xff
	if _, err := a.Authenticate(bearerReq(tok)); err != nil {
		t.Fatalf("changing the caller's slice changed the authenticator: %v", err)
	}
}

func TestPrincipalMayJoin(t *testing.T) {
	p := gateway.Principal{User: "alice", Rooms: []string{"lobby", "photos"}}
	for room, want := range map[string]bool{"lobby": true, "photos": true, "admin": false, "": false, "Lobby": false} {
		if got := p.MayJoin(room); got != want {
			t.Errorf("MayJoin(%q) = %v, want %v", room, got, want)
		}
	}
	if (gateway.Principal{User: "x"}).MayJoin("lobby") {
		t.Error("principal without rooms may join lobby")
	}
}

const (
	apiKey0 = "svc-key-0-aaaaaaaaaaaaaaaa"
	apiKey1 = "svc-key-1-bbbbbbbbbbbbbbbb"
)

func TestIngressConfigValidate(t *testing.T) {
	if err := (gateway.IngressConfig{}).Validate(); err == nil {
		t.Error("empty config accepted")
	}
	err := gateway.IngressConfig{APIKeys: []string{"tiny", apiKey0, "has space in the key!!", apiKey0}}.Validate()
	if err == nil {
		t.Fatal("bad keys accepted")
	}
	for _, want := range []string{"APIKeys[0] is 4 bytes", "APIKeys[2] contains whitespace", "APIKeys[3] repeats APIKeys[1]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	for _, k := range []string{"tiny", apiKey0, "has space"} {
		if strings.Contains(err.Error(), k) {
			t.Errorf("error %q contains key %q", err, k)
		}
	}
	if _, err := gateway.NewIngressAuth(gateway.IngressConfig{APIKeys: []string{"tiny"}}); err == nil {
		t.Error("NewIngressAuth accepted a bad config")
	}
}

func TestIngressAuth(t *testing.T) {
	jwtAuth := newAuth(t, gateway.AuthConfig{HMACSecret: testSecret})
	withJWT, err := gateway.NewIngressAuth(gateway.IngressConfig{APIKeys: []string{apiKey0, apiKey1}, JWT: jwtAuth})
	if err != nil {
		t.Fatal(err)
	}
	keysOnly, err := gateway.NewIngressAuth(gateway.IngressConfig{APIKeys: []string{apiKey0}})
	if err != nil {
		t.Fatal(err)
	}
	jwtOnly, err := gateway.NewIngressAuth(gateway.IngressConfig{JWT: jwtAuth})
	if err != nil {
		t.Fatal(err)
	}
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, testSecret, c) }
	post := func(tok string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/ingress", nil)
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		return r
	}

	tests := []struct {
		name     string
		ia       *gateway.IngressAuth
		req      *http.Request
		wantUser string
		wantErr  error
		status   int
	}{
		{"api key 0", withJWT, post(apiKey0), "apikey#0", nil, 200},
		{"api key 1", withJWT, post(apiKey1), "apikey#1", nil, 200},
		{"api key, keys only", keysOnly, post(apiKey0), "apikey#0", nil, 200},
		{"api key prefix", keysOnly, post(apiKey0[:20]), "", gateway.ErrBadCredentials, 401},
		{"unknown key, keys only", keysOnly, post(apiKey1), "", gateway.ErrBadCredentials, 401},
		{"api key when JWT only", jwtOnly, post(apiKey0), "", gateway.ErrBadCredentials, 401},
		{"no credentials", withJWT, post(""), "", gateway.ErrNoCredentials, 401},
		{"query token refused", withJWT, httptest.NewRequest(http.MethodPost, "/ingress?access_token="+apiKey0, nil), "", gateway.ErrNoCredentials, 401},
		{"jwt publish true", withJWT, post(hs(claims("svc-a", jwt.MapClaims{"publish": true}))), "svc-a", nil, 200},
		{"jwt scope string", jwtOnly, post(hs(claims("svc-b", jwt.MapClaims{"scope": "read publish"}))), "svc-b", nil, 200},
		{"jwt scope array", jwtOnly, post(hs(claims("svc-c", jwt.MapClaims{"scope": []string{"read", "publish"}}))), "svc-c", nil, 200},
		{"jwt without publish", withJWT, post(hs(claims("browser", nil))), "", gateway.ErrForbidden, 403},
		{"jwt publish false", withJWT, post(hs(claims("browser", jwt.MapClaims{"publish": false}))), "", gateway.ErrForbidden, 403},
		{"jwt publish string", withJWT, post(hs(claims("browser", jwt.MapClaims{"publish": "true"}))), "", gateway.ErrForbidden, 403},
		{"jwt scope publisher", withJWT, post(hs(claims("browser", jwt.MapClaims{"scope": "publisher read"}))), "", gateway.ErrForbidden, 403},
		{"jwt expired", withJWT, post(hs(claims("svc-a", jwt.MapClaims{"publish": true, "exp": time.Now().Add(-time.Hour).Unix()}))), "", gateway.ErrBadCredentials, 401},
		{"jwt when keys only", keysOnly, post(hs(claims("svc-a", jwt.MapClaims{"publish": true}))), "", gateway.ErrBadCredentials, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.ia.Authenticate(tt.req)
			if tt.wantErr == nil {
				if err != nil || p.User != tt.wantUser {
					t.Fatalf("got %+v, %v; want user %q", p, err, tt.wantUser)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %+v, %v; want %v", p, err, tt.wantErr)
			}
			if got := gateway.HTTPStatus(err); got != tt.status {
				t.Errorf("HTTPStatus = %d, want %d", got, tt.status)
			}
			tok, _ := strings.CutPrefix(tt.req.Header.Get("Authorization"), "Bearer ")
			checkNoLeak(t, err, tok, []byte(apiKey0), []byte(apiKey1), testSecret)
		})
	}
}
