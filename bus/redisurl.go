package bus

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
)

// RedisURLKind says which of go-redis's URL forms a RedisURL is in.
type RedisURLKind int

// The RedisURL forms. The form is told from the query: master_name means
// Sentinel (redis.ParseFailoverURL), one or more addr parameters mean
// Cluster (redis.ParseClusterURL), neither means one server (redis.ParseURL).
const (
	// URLSingle is redis[s]://[user:password@]host:port/db: one server.
	URLSingle RedisURLKind = iota
	// URLSentinel is redis[s]://[sentinel-user:sentinel-password@]sentinel:26379/db?master_name=NAME[&addr=sentinel2:26379...][&username=U&password=P]:
	// the credentials in the user info are the sentinels'; those of the data
	// nodes are the username and password parameters.
	URLSentinel
	// URLCluster is redis[s]://[user:password@]host:port?addr=host2:port2[&addr=...]:
	// seed nodes of a Redis Cluster (no database number).
	URLCluster
)

// String names the form.
func (k RedisURLKind) String() string {
	switch k {
	case URLSentinel:
		return "sentinel"
	case URLCluster:
		return "cluster"
	default:
		return "single"
	}
}

// ParsedRedisURL is a RedisURL parsed by go-redis: exactly one of the option
// pointers is set, as Kind says.
type ParsedRedisURL struct {
	Kind     RedisURLKind
	Single   *redis.Options
	Sentinel *redis.FailoverOptions
	Cluster  *redis.ClusterOptions
}

// ParseRedisURL parses a RedisURL in any of its forms (see RedisURLKind).
// Its error never contains the URL's passwords.
func ParseRedisURL(raw string) (ParsedRedisURL, error) {
	kind := URLSingle
	if u, err := url.Parse(raw); err == nil {
		q := u.Query()
		switch {
		case q.Has("master_name"):
			kind = URLSentinel
		case q.Has("addr"):
			kind = URLCluster
		}
	}
	var (
		p   = ParsedRedisURL{Kind: kind}
		err error
	)
	switch kind {
	case URLSentinel:
		p.Sentinel, err = redis.ParseFailoverURL(raw)
		if err == nil && p.Sentinel.MasterName == "" {
			err = fmt.Errorf("master_name is empty: name the primary the sentinels monitor")
		}
	case URLCluster:
		p.Cluster, err = redis.ParseClusterURL(raw)
		if err == nil {
			if u, _ := url.Parse(raw); u != nil && strings.Trim(u.Path, "/") != "" {
				err = fmt.Errorf("a cluster URL has no database number (path %q): Redis Cluster has only database 0", u.Path)
			}
		}
	default:
		p.Single, err = redis.ParseURL(raw)
	}
	if err != nil {
		return ParsedRedisURL{}, fmt.Errorf("%s URL: %s", kind, redactErr(err, raw))
	}
	return p, nil
}

// tlsConfig returns the TLS config the parsed URL asks for (nil: no TLS).
func (p ParsedRedisURL) tlsConfig() *tls.Config {
	switch p.Kind {
	case URLSentinel:
		return p.Sentinel.TLSConfig
	case URLCluster:
		return p.Cluster.TLSConfig
	default:
		return p.Single.TLSConfig
	}
}

func (p ParsedRedisURL) setTLSConfig(tc *tls.Config) {
	switch p.Kind {
	case URLSentinel:
		p.Sentinel.TLSConfig = tc
	case URLCluster:
		p.Cluster.TLSConfig = tc
	default:
		p.Single.TLSConfig = tc
	}
}

// Password returns the passwords the URL holds (data nodes' and sentinels'),
// for redaction.
func (p ParsedRedisURL) Password() []string {
	var out []string
	switch p.Kind {
	case URLSentinel:
		out = append(out, p.Sentinel.Password, p.Sentinel.SentinelPassword)
	case URLCluster:
		out = append(out, p.Cluster.Password)
	default:
		out = append(out, p.Single.Password)
	}
	return out
}

// NewRedisClient opens a client for a RedisURL in any of its forms: a
// *redis.Client for one server or behind Sentinel (redis.NewFailoverClient
// follows the primary across failovers), a *redis.ClusterClient for a
// cluster. tlsConfig, when set, replaces the default TLS config of a
// rediss:// URL (its empty ServerName taken from the URL); it is an error
// with a redis:// URL. The caller closes the client.
func NewRedisClient(rawURL string, tlsConfig *tls.Config) (redis.UniversalClient, error) {
	p, err := ParseRedisURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: RedisURL %s: %w", ErrInvalidConfig, RedactURL(rawURL), err)
	}
	if tlsConfig != nil {
		def := p.tlsConfig()
		if def == nil {
			return nil, fmt.Errorf("%w: TLSConfig is set but RedisURL %s is not rediss://", ErrInvalidConfig, RedactURL(rawURL))
		}
		tc := tlsConfig.Clone()
		if tc.ServerName == "" {
			tc.ServerName = def.ServerName
		}
		p.setTLSConfig(tc)
	}
	switch p.Kind {
	case URLSentinel:
		return redis.NewFailoverClient(p.Sentinel), nil
	case URLCluster:
		return redis.NewClusterClient(p.Cluster), nil
	default:
		return redis.NewClient(p.Single), nil
	}
}

// Redactor returns a function that replaces the Redis credentials in a text
// with "xxxxx": rawURL's user info ("user:password", found even when rawURL
// does not parse), then every password it holds (its user's, the password
// and sentinel_password parameters of the Sentinel form), then the password
// of client's options (client may be nil). go-redis errors do not contain
// credentials, but an address or a wrapped error might: this is the one
// redaction of the bus's errors, the observer's reports and the CLI's
// messages.
func Redactor(rawURL string, client redis.UniversalClient) func(string) string {
	var secrets []string
	if i := strings.Index(rawURL, "://"); i >= 0 {
		rest := rawURL[i+3:]
		if j := strings.LastIndexByte(rest, '@'); j > 0 {
			secrets = append(secrets, rest[:j])
		}
	}
	if u, err := url.Parse(rawURL); err == nil {
		if pw, ok := u.User.Password(); ok {
			secrets = append(secrets, pw)
		}
		q := u.Query()
		secrets = append(secrets, q["password"]...)
		secrets = append(secrets, q["sentinel_password"]...)
	}
	// (Not ParseRedisURL: it redacts its own errors with this.)
	switch c := client.(type) {
	case *redis.Client:
		secrets = append(secrets, c.Options().Password)
	case *redis.ClusterClient:
		secrets = append(secrets, c.Options().Password)
	case *redis.Ring:
		secrets = append(secrets, c.Options().Password)
	}
	secrets = slices.DeleteFunc(secrets, func(s string) bool { return s == "" })
	return func(s string) string {
		for _, secret := range secrets {
			s = strings.ReplaceAll(s, secret, "xxxxx")
		}
		return s
	}
}
