package gateway

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

const (
	// MinHMACSecretLen is the shortest [AuthConfig.HMACSecret] accepted, in
	// bytes: RFC 7518 §3.2 requires an HS256 key at least as long as the hash.
	MinHMACSecretLen = 32

	// MinRSAKeyBits is the smallest [AuthConfig.RSAPublicKey] modulus
	// accepted, in bits.
	MinRSAKeyBits = 2048

	// MinAPIKeyLen is the shortest ingress API key accepted, in bytes.
	MinAPIKeyLen = 16

	// AccessTokenParam is the query parameter [Authenticator.Authenticate]
	// reads the token from when there is no Authorization header. Browsers'
	// EventSource cannot set headers, so SSE connections use it.
	AccessTokenParam = "access_token"

	// PublishScope is the OAuth scope that grants publishing on ingress; see
	// [IngressAuth].
	PublishScope = "publish"

	// maxTokenLen bounds the work spent on one presented token.
	maxTokenLen = 16 << 10

	// DefaultJWKSRefreshInterval is how often the JWKS is fetched again
	// when JWKSConfig.RefreshInterval is 0.
	DefaultJWKSRefreshInterval = time.Hour
	// DefaultJWKSUnknownKIDInterval is the least time between two fetches
	// of the JWKS caused by tokens whose kid it does not hold, when
	// JWKSConfig.UnknownKIDInterval is 0.
	DefaultJWKSUnknownKIDInterval = time.Minute
	// DefaultJWKSTimeout bounds one fetch of the JWKS when
	// JWKSConfig.Timeout is 0.
	DefaultJWKSTimeout = 10 * time.Second
)

// JWKSAlgorithms are the JWS algorithms verified with the keys of a
// [JWKSConfig] key set: RSA (PKCS #1 v1.5 and PSS) and ECDSA. HS256 is never
// among them: it is verified with AuthConfig.HMACSecret only, so a key of
// the set is never used as an HMAC secret.
var JWKSAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

// JWKSConfig points an [Authenticator] at a JSON Web Key Set (RFC 7517),
// such as an identity provider's jwks_uri, so that keys can be rotated
// without restarting the gateway. The set is fetched by
// github.com/MicahParks/keyfunc/v3 (on github.com/MicahParks/jwkset): once
// by NewAuthenticator, then every RefreshInterval, and at once when a token
// names a kid the set does not hold (at most once per UnknownKIDInterval).
// Every fetch replaces the keys held, so a key removed from the set stops
// verifying tokens after the next fetch.
type JWKSConfig struct {
	// URL is the http or https URL of the key set. Empty means no JWKS.
	URL string
	// RefreshInterval is how often the set is fetched again. Default
	// DefaultJWKSRefreshInterval (1h).
	RefreshInterval time.Duration
	// UnknownKIDInterval is the least time between two fetches caused by
	// tokens whose kid the set does not hold (a new key after a rotation).
	// A token with a kid still unknown that arrives sooner is refused
	// without a fetch (when the next permitted fetch is less than Timeout
	// away, it waits for it), so unknown kids cannot make the gateway
	// hammer the identity provider. Default DefaultJWKSUnknownKIDInterval
	// (1m).
	UnknownKIDInterval time.Duration
	// Timeout bounds one fetch. Default DefaultJWKSTimeout (10s).
	Timeout time.Duration
	// Client fetches the set. Default http.DefaultClient (bounded by
	// Timeout).
	Client *http.Client
	// OnRefreshError, if set, is told every fetch that failed (the keys
	// held before it are kept). A failed first fetch does not fail
	// NewAuthenticator: tokens are refused until a fetch succeeds. The
	// gateway logs these errors when this is nil.
	OnRefreshError func(err error)
}

func (c JWKSConfig) validate() []error {
	if c.URL == "" {
		return nil
	}
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("gateway: AuthConfig: JWKS.URL %q is not an http or https URL", c.URL))
	}
	for name, d := range map[string]time.Duration{"RefreshInterval": c.RefreshInterval, "UnknownKIDInterval": c.UnknownKIDInterval, "Timeout": c.Timeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("gateway: AuthConfig: JWKS.%s is %s: must be 0 (the default) or more", name, d))
		}
	}
	return errs
}

// AuthConfig configures an [Authenticator]. At least one of HMACSecret,
// RSAPublicKey and JWKS.URL must be set; the algorithms accepted follow from
// which are.
type AuthConfig struct {
	// HMACSecret, if set, makes HS256 tokens acceptable, verified with this
	// secret. At least MinHMACSecretLen bytes. It is copied by
	// NewAuthenticator.
	HMACSecret []byte

	// RSAPublicKey, if set, makes RS256 tokens acceptable, verified with this
	// key. At least MinRSAKeyBits bits.
	RSAPublicKey *rsa.PublicKey

	// JWKS, if its URL is set, makes the [JWKSAlgorithms] acceptable,
	// verified with the keys of that JSON Web Key Set, refreshed as keys
	// rotate. RSA keys of the set must have at least MinRSAKeyBits bits.
	// With both JWKS and RSAPublicKey, an RS256 token with a kid header is
	// verified with the set and one without a kid with RSAPublicKey.
	JWKS JWKSConfig

	// Issuer, if set, must equal the token's iss claim. Empty means iss is
	// not checked.
	Issuer string

	// Audience, if set, must be one of the token's aud values. Empty means
	// aud is not checked.
	Audience string

	// Leeway is the clock skew tolerated on exp, nbf and iat. Default 0;
	// negative values are invalid.
	Leeway time.Duration
}

// Validate reports every problem with the config at once, joined with
// [errors.Join]. It does not change the config.
func (c AuthConfig) Validate() error {
	var errs []error
	if len(c.HMACSecret) == 0 && c.RSAPublicKey == nil && c.JWKS.URL == "" {
		errs = append(errs, errors.New("gateway: AuthConfig: no verification key: set HMACSecret (for HS256), RSAPublicKey (for RS256) or JWKS.URL (for RS/PS/ES keys from a key set), or several"))
	}
	errs = append(errs, c.JWKS.validate()...)
	if n := len(c.HMACSecret); n > 0 && n < MinHMACSecretLen {
		errs = append(errs, fmt.Errorf("gateway: AuthConfig: HMACSecret is %d bytes: HS256 needs at least %d", n, MinHMACSecretLen))
	}
	if k := c.RSAPublicKey; k != nil {
		switch {
		case k.N == nil:
			errs = append(errs, errors.New("gateway: AuthConfig: RSAPublicKey has no modulus"))
		case k.N.BitLen() < MinRSAKeyBits:
			errs = append(errs, fmt.Errorf("gateway: AuthConfig: RSAPublicKey is %d bits: RS256 needs at least %d", k.N.BitLen(), MinRSAKeyBits))
		}
	}
	if c.Leeway < 0 {
		errs = append(errs, fmt.Errorf("gateway: AuthConfig: Leeway is %s: must be 0 or more", c.Leeway))
	}
	return invalidConfig(errs)
}

// Principal is the authenticated identity behind a connection.
type Principal struct {
	// User is the token's sub claim, never empty for a JWT principal. For an
	// ingress API key it is "apikey#<index in IngressConfig.APIKeys>".
	User string
	// Rooms are the rooms the principal may join, from the rooms claim.
	Rooms []string
	// Expires is when the principal's token stops being accepted: its exp
	// claim plus AuthConfig.Leeway. A stream opened with the token is ended
	// then (see [TokenExpiredEvent]). Zero for an API key.
	Expires time.Time
}

// MayJoin reports whether room is one of p.Rooms. The empty room is never
// joinable.
func (p Principal) MayJoin(room string) bool {
	return room != "" && slices.Contains(p.Rooms, room)
}

// Authenticator verifies the JWTs of browser and service requests.
//
// A token must carry a non-empty sub and an exp claim; rooms, if present,
// must be an array of strings. Only HS256 (when AuthConfig.HMACSecret is set)
// and RS256 (when AuthConfig.RSAPublicKey is set) are accepted; "none" and any
// other algorithm are rejected, and each algorithm is verified only with its
// own key, so an HS256 token signed with the RSA public key (algorithm
// confusion) fails. With AuthConfig.JWKS, the [JWKSAlgorithms] are accepted
// too, verified with the key set's key named by the token's kid (or, for a
// token without kid, with each key of the set in turn).
//
// An Authenticator is safe for concurrent use. One with a JWKS refreshes it
// in a goroutine until Close.
type Authenticator struct {
	hmacSecret []byte
	rsaKey     *rsa.PublicKey
	jwks       keyfunc.Keyfunc // nil without AuthConfig.JWKS.URL
	stopJWKS   context.CancelFunc
	methods    string // for error messages, e.g. "HS256, RS256"
	issuer     string
	audience   string
	leeway     time.Duration
	parser     *jwt.Parser
}

// NewAuthenticator validates cfg and returns an Authenticator for it.
func NewAuthenticator(cfg AuthConfig) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Authenticator{issuer: cfg.Issuer, audience: cfg.Audience, leeway: cfg.Leeway}
	var methods []string
	if len(cfg.HMACSecret) > 0 {
		a.hmacSecret = bytes.Clone(cfg.HMACSecret)
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if cfg.RSAPublicKey != nil {
		a.rsaKey = cfg.RSAPublicKey
		methods = append(methods, jwt.SigningMethodRS256.Alg())
	}
	if cfg.JWKS.URL != "" {
		if err := a.startJWKS(cfg.JWKS); err != nil {
			return nil, err
		}
		for _, m := range JWKSAlgorithms {
			if !slices.Contains(methods, m) {
				methods = append(methods, m)
			}
		}
	}
	a.methods = strings.Join(methods, ", ")
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

// startJWKS starts the key set's keyfunc: it fetches the set once (a
// failure goes to OnRefreshError and leaves the set empty) and starts the
// refresh goroutine, stopped by Close.
func (a *Authenticator) startJWKS(c JWKSConfig) error {
	every := cmp.Or(c.RefreshInterval, DefaultJWKSRefreshInterval)
	unknown := cmp.Or(c.UnknownKIDInterval, DefaultJWKSUnknownKIDInterval)
	onErr := c.OnRefreshError
	if onErr == nil {
		onErr = func(error) {}
	}
	timeout := cmp.Or(c.Timeout, DefaultJWKSTimeout)
	ctx, cancel := context.WithCancel(context.Background())
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{c.URL}, keyfunc.Override{
		Client:      c.Client,
		HTTPTimeout: timeout,
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(_ context.Context, err error) { onErr(fmt.Errorf("gateway: fetch the JWKS: %w", err)) }
		},
		RefreshInterval:   every,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(unknown), 1),
		// jwkset bounds both the wait for the limiter above and the fetch
		// that follows with this one timeout, so it is the fetch's: a
		// token with an unknown kid waits at most that long for a
		// permitted fetch, and is refused at once when the next one is
		// further away.
		RateLimitWaitMax: timeout,
	})
	if err != nil {
		cancel()
		return fmt.Errorf("gateway: AuthConfig: JWKS: %w", err)
	}
	a.jwks, a.stopJWKS = kf, cancel
	return nil
}

// Close stops the JWKS refresh goroutine, if any; the keys fetched last go
// on verifying tokens. Safe to call more than once. [Gateway.Close] closes
// the Authenticator that New built.
func (a *Authenticator) Close() {
	if a.stopJWKS != nil {
		a.stopJWKS()
	}
}

// Authenticate returns the principal of the request's token, read from
// "Authorization: Bearer <token>" or, when that header is absent, from the
// access_token query parameter (see [AccessTokenParam]). A header that is
// present wins over the query parameter.
//
// It returns an error wrapping [ErrNoCredentials] when there is no token and
// [ErrBadCredentials] when the token is not acceptable; both mean 401. The
// error text never contains the token.
//
// The query parameter form puts the token in the URL: keep access logs from
// recording query strings of SSE endpoints, and keep token lifetimes short.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	tok, err := bearerToken(r, true)
	if err != nil {
		return Principal{}, err
	}
	return a.VerifyContext(r.Context(), tok)
}

// Verify checks a token as Authenticate does and returns its principal.
// It returns an error wrapping [ErrBadCredentials] when the token is not
// acceptable; the error text never contains the token. `eventbus token
// check` uses it.
func (a *Authenticator) Verify(token string) (Principal, error) {
	return a.VerifyContext(context.Background(), token)
}

// VerifyContext is Verify with a context that bounds the JWKS fetch a token
// with an unknown kid may cause.
func (a *Authenticator) VerifyContext(ctx context.Context, token string) (Principal, error) {
	if len(token) > maxTokenLen {
		return Principal{}, fmt.Errorf("%w: token is %d bytes: at most %d are accepted", ErrBadCredentials, len(token), maxTokenLen)
	}
	c, err := a.verify(ctx, token)
	if err != nil {
		return Principal{}, err
	}
	return c.principal(a.leeway), nil
}

// tokenClaims are the claims this package reads. Publish and Scope are
// decoded loosely so that an unexpected shape in a claim only ingress cares
// about does not reject a browser token.
type tokenClaims struct {
	jwt.RegisteredClaims
	Rooms   []string `json:"rooms,omitempty"`
	Publish any      `json:"publish,omitempty"`
	Scope   any      `json:"scope,omitempty"`
}

func (c *tokenClaims) principal(leeway time.Duration) Principal {
	p := Principal{User: c.Subject, Rooms: slices.Clone(c.Rooms)}
	if c.ExpiresAt != nil {
		p.Expires = c.ExpiresAt.Add(leeway)
	}
	return p
}

// mayPublish reports whether the claims hold "publish": true, or a scope
// (space-separated string, or array of strings) containing PublishScope.
func (c *tokenClaims) mayPublish() bool {
	if b, ok := c.Publish.(bool); ok && b {
		return true
	}
	switch s := c.Scope.(type) {
	case string:
		return slices.Contains(strings.Fields(s), PublishScope)
	case []any:
		for _, v := range s {
			if v == PublishScope {
				return true
			}
		}
	}
	return false
}

func (a *Authenticator) verify(ctx context.Context, tok string) (*tokenClaims, error) {
	c := &tokenClaims{}
	if _, err := a.parser.ParseWithClaims(tok, c, a.keyFunc(ctx)); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadCredentials, a.reason(err, c, tok))
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: token has no sub claim: a non-empty subject is required", ErrBadCredentials)
	}
	return c, nil
}

var (
	// errJWKSKeyUnknown says the key set holds no key of the token's kid.
	errJWKSKeyUnknown = errors.New("no key of this kid in the JWKS")
	// errJWKSNoKeys says the key set holds no usable key for a token
	// without kid.
	errJWKSNoKeys = errors.New("no key for this algorithm in the JWKS")
	// errJWKSKeyUnusable is any other failure to get the key of a kid:
	// the JWK's alg is another, or a fetch for an unknown kid was not
	// permitted yet (JWKSConfig.UnknownKIDInterval) or failed.
	errJWKSKeyUnusable = errors.New("the JWKS key of this kid cannot be used")
)

// keyFunc returns the jwt.Keyfunc that gives the verification key for a
// token's algorithm: the HMAC secret for HS256, the static RSA key for RS256
// (unless a JWKS is configured and the token names a kid), a key of the JWKS
// for the JWKSAlgorithms, and nothing for any other, so one kind of key is
// never used to verify another kind of signature. ctx bounds a JWKS fetch
// on an unknown kid.
func (a *Authenticator) keyFunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		_, hasKID := t.Header[jwkset.HeaderKID]
		switch {
		case alg == jwt.SigningMethodHS256.Alg():
			if a.hmacSecret != nil {
				return a.hmacSecret, nil
			}
		case alg == jwt.SigningMethodRS256.Alg() && a.rsaKey != nil && (a.jwks == nil || !hasKID):
			return a.rsaKey, nil
		case a.jwks != nil && slices.Contains(JWKSAlgorithms, alg):
			k, err := a.jwks.KeyfuncCtx(ctx)(t)
			switch {
			case errors.Is(err, jwkset.ErrKeyNotFound):
				return nil, errJWKSKeyUnknown
			case err == nil && !hasKID:
				if set, ok := k.(jwt.VerificationKeySet); ok && len(set.Keys) == 0 {
					return nil, errJWKSNoKeys
				}
			}
			if err != nil {
				return nil, errJWKSKeyUnusable
			}
			return strongKeys(k)
		}
		return nil, errors.New("no key for this algorithm")
	}
}

// strongKeys refuses the RSA keys of a key set below MinRSAKeyBits, as
// Validate does for AuthConfig.RSAPublicKey; keyfunc does not check sizes.
// k is one key (a token with a kid) or a jwt.VerificationKeySet (without).
func strongKeys(k any) (any, error) {
	weak := func(k any) bool {
		rk, ok := k.(*rsa.PublicKey)
		return ok && (rk.N == nil || rk.N.BitLen() < MinRSAKeyBits)
	}
	if set, ok := k.(jwt.VerificationKeySet); ok {
		set.Keys = slices.DeleteFunc(slices.Clone(set.Keys), func(k jwt.VerificationKey) bool { return weak(k) })
		if len(set.Keys) == 0 {
			return nil, errJWKSNoKeys
		}
		return set, nil
	}
	if weak(k) {
		return nil, fmt.Errorf("the JWKS key is an RSA key below %d bits", MinRSAKeyBits)
	}
	return k, nil
}

// reason turns a jwt error into a fixed message. The jwt library's own
// messages are not passed through, so that nothing derived from the token's
// bytes reaches an error string or a log. c holds whatever claims were
// decoded before the failure.
func (a *Authenticator) reason(err error, c *tokenClaims, tok string) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		if msg := claimTypeProblem(tok); msg != "" {
			return msg
		}
		return "token is malformed: want a JWS compact serialization (header.payload.signature) with a JSON payload"
	case errors.Is(err, errJWKSKeyUnknown):
		return "token is signed with a key (kid) the JWKS does not hold, even after fetching it again"
	case errors.Is(err, errJWKSKeyUnusable):
		return "token's key (kid) cannot be used from the JWKS: its alg is another, or it is not held and the JWKS was fetched again too recently (or the fetch failed)"
	case errors.Is(err, errJWKSNoKeys):
		return "token has no kid, and the JWKS holds no key for its algorithm"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "token signature is invalid or its algorithm is not accepted (accepted: " + a.methods + ")"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token is expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token is not valid yet (nbf)"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "token is used before it was issued (iat)"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		var missing []string
		if c.ExpiresAt == nil {
			missing = append(missing, "exp")
		}
		if a.issuer != "" && c.Issuer == "" {
			missing = append(missing, "iss")
		}
		if a.audience != "" && len(c.Audience) == 0 {
			missing = append(missing, "aud")
		}
		if len(missing) == 0 {
			return "token lacks a required claim"
		}
		return "token lacks required claims: " + strings.Join(missing, ", ")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "token has the wrong issuer (iss)"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "token has the wrong audience (aud)"
	default:
		return "token is invalid"
	}
}

// bearerToken extracts the token from "Authorization: Bearer <t>" or, if
// allowQuery and there is no Authorization header, from access_token.
func bearerToken(r *http.Request, allowQuery bool) (string, error) {
	var tok string
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return "", fmt.Errorf("%w: Authorization header must be \"Bearer <token>\"", ErrBadCredentials)
		}
		tok = strings.TrimSpace(rest)
		if tok == "" {
			return "", fmt.Errorf("%w: Authorization header has an empty bearer token", ErrBadCredentials)
		}
	} else {
		vals, present := r.URL.Query()[AccessTokenParam]
		switch {
		case !present && allowQuery:
			return "", fmt.Errorf("%w: send \"Authorization: Bearer <token>\" or the %s query parameter", ErrNoCredentials, AccessTokenParam)
		case !present:
			return "", fmt.Errorf("%w: send \"Authorization: Bearer <token>\"", ErrNoCredentials)
		case !allowQuery:
			return "", fmt.Errorf("%w: this endpoint reads the token from the Authorization header only, not from %s", ErrNoCredentials, AccessTokenParam)
		case len(vals) != 1:
			return "", fmt.Errorf("%w: %s is given %d times: give it once", ErrBadCredentials, AccessTokenParam, len(vals))
		}
		tok = vals[0]
		if tok == "" {
			return "", fmt.Errorf("%w: %s is empty", ErrBadCredentials, AccessTokenParam)
		}
	}
	if len(tok) > maxTokenLen {
		return "", fmt.Errorf("%w: token is %d bytes: at most %d are accepted", ErrBadCredentials, len(tok), maxTokenLen)
	}
	return tok, nil
}

// IngressConfig configures an [IngressAuth]. At least one of APIKeys and JWT
// must be set.
type IngressConfig struct {
	// APIKeys are static keys a service presents as
	// "Authorization: Bearer <key>". Each must be at least MinAPIKeyLen bytes
	// and contain no whitespace. An API key grants publishing. Keys are
	// compared in constant time. Empty means no API keys are accepted.
	APIKeys []string

	// JWT, if set, verifies bearer tokens that are not API keys. A valid JWT
	// grants publishing only if its claims hold "publish": true or a scope
	// claim containing PublishScope; otherwise the request is forbidden.
	// Nil means JWTs are not accepted on ingress.
	JWT *Authenticator
}

// Validate reports every problem with the config at once, joined with
// [errors.Join]. It does not change the config. Messages name keys by index,
// never by value.
func (c IngressConfig) Validate() error {
	var errs []error
	if len(c.APIKeys) == 0 && c.JWT == nil {
		errs = append(errs, errors.New("gateway: IngressConfig: no credential accepted: set APIKeys, JWT, or both"))
	}
	seen := make(map[string]int, len(c.APIKeys))
	for i, k := range c.APIKeys {
		if len(k) < MinAPIKeyLen {
			errs = append(errs, fmt.Errorf("gateway: IngressConfig: APIKeys[%d] is %d bytes: at least %d are required", i, len(k), MinAPIKeyLen))
		}
		if strings.ContainsFunc(k, isSpaceOrControl) {
			errs = append(errs, fmt.Errorf("gateway: IngressConfig: APIKeys[%d] contains whitespace or control characters: it could not be sent in a header", i))
		}
		if j, dup := seen[k]; dup {
			errs = append(errs, fmt.Errorf("gateway: IngressConfig: APIKeys[%d] repeats APIKeys[%d]", i, j))
		} else {
			seen[k] = i
		}
	}
	return invalidConfig(errs)
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// IngressAuth checks the credentials of service-to-service POSTs to the
// ingress endpoint. The token is read from "Authorization: Bearer <t>" only
// (never from the query string, which ends up in logs). It is accepted if:
//
//   - it equals one of IngressConfig.APIKeys (constant-time comparison);
//     the principal is then "apikey#<index>" with no rooms; or
//   - it is a JWT accepted by IngressConfig.JWT whose claims grant
//     publishing ("publish": true, or PublishScope in scope); a valid JWT
//     without that grant gives an error wrapping [ErrForbidden] (403).
//
// Anything else gives [ErrNoCredentials] or [ErrBadCredentials] (401).
//
// An IngressAuth is safe for concurrent use.
type IngressAuth struct {
	keys [][sha256.Size]byte
	jwt  *Authenticator
}

// NewIngressAuth validates cfg and returns an IngressAuth for it.
func NewIngressAuth(cfg IngressConfig) (*IngressAuth, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ia := &IngressAuth{jwt: cfg.JWT}
	for _, k := range cfg.APIKeys {
		ia.keys = append(ia.keys, sha256.Sum256([]byte(k)))
	}
	return ia, nil
}

// Authenticate checks the request's credentials and returns its principal,
// or an error wrapping [ErrNoCredentials], [ErrBadCredentials] or
// [ErrForbidden] (401, 401 and 403); see [IngressAuth].
func (ia *IngressAuth) Authenticate(r *http.Request) (Principal, error) {
	tok, err := bearerToken(r, false)
	if err != nil {
		return Principal{}, err
	}
	return ia.verify(r.Context(), tok)
}

// Verify checks a bearer token (an API key or a JWT) as Authenticate does
// and returns its principal, or an error wrapping [ErrBadCredentials] or
// [ErrForbidden].
func (ia *IngressAuth) Verify(tok string) (Principal, error) {
	return ia.verify(context.Background(), tok)
}

func (ia *IngressAuth) verify(ctx context.Context, tok string) (Principal, error) {
	if len(tok) > maxTokenLen {
		return Principal{}, fmt.Errorf("%w: token is %d bytes: at most %d are accepted", ErrBadCredentials, len(tok), maxTokenLen)
	}
	if i := ia.matchKey(tok); i >= 0 {
		return Principal{User: "apikey#" + strconv.Itoa(i)}, nil
	}
	if ia.jwt == nil {
		return Principal{}, fmt.Errorf("%w: unknown API key", ErrBadCredentials)
	}
	c, err := ia.jwt.verify(ctx, tok)
	if err != nil {
		return Principal{}, err
	}
	if !c.mayPublish() {
		return Principal{}, fmt.Errorf("%w: token does not grant publishing: it needs \"publish\": true or the %q scope", ErrForbidden, PublishScope)
	}
	return c.principal(ia.jwt.leeway), nil
}

// matchKey returns the index of the API key equal to tok, or -1. Comparing
// fixed-size digests, all of them every time, keeps the time independent of
// the key contents and lengths.
func (ia *IngressAuth) matchKey(tok string) int {
	sum := sha256.Sum256([]byte(tok))
	found := -1
	for i := range ia.keys {
		if subtle.ConstantTimeCompare(sum[:], ia.keys[i][:]) == 1 {
			found = i
		}
	}
	return found
}

// claimKinds are the JSON kinds the claims this package reads must have.
var claimKinds = []struct {
	name, want string
	ok         func(any) bool
}{
	{"sub", "a string", isString},
	{"iss", "a string", isString},
	{"jti", "a string", isString},
	{"exp", "a number (seconds since 1970)", isNumber},
	{"nbf", "a number (seconds since 1970)", isNumber},
	{"iat", "a number (seconds since 1970)", isNumber},
	{"aud", "a string or an array of strings", func(v any) bool { return isString(v) || isStringArray(v) }},
	{"rooms", "an array of strings, e.g. [\"lobby\",\"photos\"]", isStringArray},
}

// claimTypeProblem decodes the payload of a compact JWS whose claims did
// not decode and says which claim has the wrong JSON type, e.g. "token
// claim rooms is a string: want an array of strings". It returns "" when
// the payload is not a JSON object or every claim has its type (the token
// is malformed in another way). Only claim names and JSON kinds reach the
// message, never a value.
func claimTypeProblem(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return ""
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		return ""
	}
	var problems []string
	for _, k := range claimKinds {
		v, present := claims[k.name]
		if !present || v == nil || k.ok(v) {
			continue
		}
		problems = append(problems, fmt.Sprintf("claim %s is %s: want %s", k.name, jsonKind(v), k.want))
	}
	if len(problems) == 0 {
		return ""
	}
	return "token " + strings.Join(problems, "; ")
}

func isString(v any) bool { _, ok := v.(string); return ok }
func isNumber(v any) bool { _, ok := v.(float64); return ok }

func isStringArray(v any) bool {
	a, ok := v.([]any)
	if !ok {
		return false
	}
	for _, e := range a {
		if !isString(e) {
			return false
		}
	}
	return true
}

// jsonKind names the JSON kind of a decoded value.
func jsonKind(v any) string {
	switch v := v.(type) {
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		if isStringArray(v) {
			return "an array of strings"
		}
		return "an array with a non-string element"
	case map[string]any:
		return "an object"
	}
	return "null"
}
