package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"

	"github.com/shared-infra/eventbus/gateway"
)

// defaultTokenTTL is the lifetime of a token minted by `eventbus token`.
const defaultTokenTTL = time.Hour

// tokenKeyOptions are the flags `token` and `token check` share with serve:
// the same names, so the same EVENTBUS_* variables configure both.
type tokenKeyOptions struct {
	jwtSecretFile string
	jwtIssuer     string
	jwtAudience   string
}

func (k *tokenKeyOptions) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&k.jwtSecretFile, "jwt-secret-file", "", "file holding the HS256 secret serve uses (at least 32 bytes; default $"+envJWTSecret+")")
	f.StringVar(&k.jwtIssuer, "jwt-issuer", "", "iss claim (token) or required iss (check); as serve's --jwt-issuer")
	f.StringVar(&k.jwtAudience, "jwt-audience", "", "aud claim (token) or required aud (check); as serve's --jwt-audience")
}

// jwksOptions are serve's JWKS flags, shared with `token check`.
type jwksOptions struct {
	url             string
	refresh         time.Duration
	unknownKIDFetch time.Duration
}

func (j *jwksOptions) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&j.url, "jwks-url", "", "URL of a JSON Web Key Set (an identity provider's jwks_uri) whose RSA and EC keys verify RS*/PS*/ES* JWTs; followed as keys rotate")
	f.DurationVar(&j.refresh, "jwks-refresh", gateway.DefaultJWKSRefreshInterval, "how often the JWKS is fetched again")
	f.DurationVar(&j.unknownKIDFetch, "jwks-unknown-kid-refresh", gateway.DefaultJWKSUnknownKIDInterval, "least time between two fetches of the JWKS caused by tokens of an unknown kid (a new key)")
}

// config is the gateway's JWKSConfig of the flags; the zero config without
// --jwks-url.
func (j *jwksOptions) config() (gateway.JWKSConfig, error) {
	if j.url == "" {
		return gateway.JWKSConfig{}, nil
	}
	if j.refresh <= 0 || j.unknownKIDFetch <= 0 {
		return gateway.JWKSConfig{}, usagef("--jwks-refresh and --jwks-unknown-kid-refresh must be above 0")
	}
	return gateway.JWKSConfig{URL: j.url, RefreshInterval: j.refresh, UnknownKIDInterval: j.unknownKIDFetch}, nil
}

// secret reads the HS256 secret as serve does: --jwt-secret-file, else
// $EVENTBUS_JWT_SECRET.
func (k *tokenKeyOptions) secret() ([]byte, error) {
	s, err := readHMACSecret(k.jwtSecretFile)
	if err != nil {
		return nil, err
	}
	switch {
	case len(s) == 0:
		return nil, usagef("no HS256 secret: set $%s or --jwt-secret-file (the secret serve verifies tokens with)", envJWTSecret)
	case len(s) < gateway.MinHMACSecretLen:
		return nil, usagef("the HS256 secret is %d bytes: at least %d are required (openssl rand -hex 32)", len(s), gateway.MinHMACSecretLen)
	}
	return s, nil
}

// readHMACSecret returns the secret of the file, else of $EVENTBUS_JWT_SECRET;
// nil when neither is set.
func readHMACSecret(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, usagef("--jwt-secret-file: %v", err)
		}
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if v := strings.TrimSpace(os.Getenv(envJWTSecret)); v != "" {
		return []byte(v), nil
	}
	return nil, nil
}

func newTokenCmd(*globals) *cobra.Command {
	var (
		k       tokenKeyOptions
		sub     string
		rooms   []string
		ttl     time.Duration
		publish bool
	)
	cmd := &cobra.Command{
		Use:   "token --sub USER [--rooms a,b] [--ttl 1h]",
		Short: "Mint an HS256 JWT that eventbus serve accepts (development and tests)",
		Long: `Mint a JWT signed with the HS256 secret eventbus serve verifies tokens with
($EVENTBUS_JWT_SECRET, or --jwt-secret-file / $EVENTBUS_JWT_SECRET_FILE), and
print it on stdout. The token carries sub, rooms (the rooms its holder may
join), iat, exp (now + --ttl) and, with --jwt-issuer / --jwt-audience (or
$EVENTBUS_JWT_ISSUER / $EVENTBUS_JWT_AUDIENCE, as serve reads them), iss and
aud. --publish adds "publish": true, which ingress accepts with --ingress-jwt.

A stream opened with the token ends at its exp with a "token-expired" event.
In production tokens come from your identity provider; this is Centrifugo's
gentoken for development. 'eventbus token check' verifies a token the way
serve does.`,
		Example: `  export EVENTBUS_JWT_SECRET=$(openssl rand -hex 32)
  eventbus token --sub alice --rooms lobby,photos --ttl 1h
  curl -N "localhost:8080/v1/stream?rooms=lobby&access_token=$(eventbus token --sub alice --rooms lobby)"
  eventbus token --sub billing --publish --ttl 10m | eventbus token check -`,
		Args: usageArgs(cobra.NoArgs),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if strings.TrimSpace(sub) == "" {
				return usagef("--sub is required: the user the token is for (its sub claim)")
			}
			if ttl <= 0 {
				return usagef("--ttl %s: must be above 0, e.g. 1h or 15m", ttl)
			}
			secret, err := k.secret()
			if err != nil {
				return err
			}
			now := time.Now()
			c := jwt.MapClaims{"sub": sub, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
			if len(rooms) > 0 {
				c["rooms"] = rooms
			}
			if publish {
				c["publish"] = true
			}
			if k.jwtIssuer != "" {
				c["iss"] = k.jwtIssuer
			}
			if k.jwtAudience != "" {
				c["aud"] = k.jwtAudience
			}
			tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
			if err != nil {
				return &failure{err: fmt.Errorf("sign the token: %w", err)}
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		}),
	}
	k.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&sub, "sub", "", "the user the token is for (sub claim; required)")
	f.StringSliceVar(&rooms, "rooms", nil, "rooms the holder may join (rooms claim; comma-separated or repeated)")
	f.DurationVar(&ttl, "ttl", defaultTokenTTL, "lifetime: exp is now + ttl")
	f.BoolVar(&publish, "publish", false, "grant publishing on ingress (\"publish\": true; serve --ingress-jwt)")
	envFlags(cmd)
	cmd.AddCommand(newTokenCheckCmd())
	return cmd
}

func newTokenCheckCmd() *cobra.Command {
	var (
		k         tokenKeyOptions
		jwks      jwksOptions
		publicKey string
		leeway    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "check [TOKEN|-]",
		Short: "Verify a JWT the way eventbus serve does and print its principal",
		Long: `Verify a JWT with the keys, issuer, audience and leeway serve would use
(the same flags and EVENTBUS_* variables) and print what serve would make of
it as JSON: user, rooms, when it expires, whether it may publish. TOKEN is
the argument, or stdin with - or no argument. An unacceptable token exits
with code 1 and the reason serve gives (expired, bad signature, which claim
has the wrong type, ...).`,
		Example: `  eventbus token check "$TOKEN"
  eventbus token --sub alice --rooms lobby | eventbus token check`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			tok, err := readTokenArg(cmd.InOrStdin(), args)
			if err != nil {
				return err
			}
			cfg := gateway.AuthConfig{Issuer: k.jwtIssuer, Audience: k.jwtAudience, Leeway: leeway}
			if cfg.HMACSecret, err = readHMACSecret(k.jwtSecretFile); err != nil {
				return err
			}
			if publicKey != "" {
				if cfg.RSAPublicKey, err = readRSAPublicKey(publicKey); err != nil {
					return usagef("--jwt-public-key %s: %v", publicKey, err)
				}
			}
			if cfg.JWKS, err = jwks.config(); err != nil {
				return err
			}
			// The first fetch reports synchronously, inside NewAuthenticator;
			// later ones (the refresh goroutine) may race with this command.
			var fetchErr atomic.Pointer[error]
			cfg.JWKS.OnRefreshError = func(err error) { fetchErr.CompareAndSwap(nil, &err) }
			auth, err := gateway.NewAuthenticator(cfg)
			if err != nil {
				return usagef("%s — set $%s, --jwt-secret-file, --jwt-public-key or --jwks-url", oneLine(err.Error()), envJWTSecret)
			}
			defer auth.Close()
			if e := fetchErr.Load(); e != nil {
				return &failure{err: fmt.Errorf("--jwks-url: %v", *e)}
			}
			p, err := auth.Verify(tok)
			if err != nil {
				return &failure{err: fmt.Errorf("token refused: %s", strings.TrimPrefix(err.Error(), gateway.ErrBadCredentials.Error()+": "))}
			}
			ing, err := gateway.NewIngressAuth(gateway.IngressConfig{JWT: auth})
			if err != nil {
				return &failure{err: err}
			}
			_, perr := ing.Verify(tok)
			out := struct {
				User      string    `json:"user"`
				Rooms     []string  `json:"rooms"`
				Expires   time.Time `json:"expires"`
				ExpiresIn string    `json:"expiresIn"`
				Publish   bool      `json:"publish"`
			}{p.User, p.Rooms, p.Expires.UTC(), time.Until(p.Expires).Round(time.Second).String(), perr == nil}
			if out.Rooms == nil {
				out.Rooms = []string{}
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(out)
		}),
	}
	k.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&publicKey, "jwt-public-key", "", "PEM file of the RS256 public key, as serve's --jwt-public-key")
	f.DurationVar(&leeway, "jwt-leeway", 0, "clock skew tolerated on exp/nbf/iat, as serve's --jwt-leeway")
	jwks.flags(cmd)
	envFlags(cmd)
	return cmd
}

// readTokenArg returns the token of the argument, or the first line of in
// when the argument is "-" or missing.
func readTokenArg(in io.Reader, args []string) (string, error) {
	if len(args) == 1 && args[0] != "-" {
		return strings.TrimSpace(args[0]), nil
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", &failure{err: fmt.Errorf("read the token from stdin: %w", err)}
	}
	tok := strings.TrimSpace(line)
	if tok == "" {
		return "", usagef("no token: give it as the argument or on stdin")
	}
	return tok, nil
}
