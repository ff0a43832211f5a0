// Package redistest gives tests a Redis client and a per-test key prefix that
// is cleaned up when the test ends.
//
// Which Redis: if REDIS_CLUSTER_ADDRS is set (comma-separated host:port list),
// a Redis Cluster over those addresses; otherwise the Redis at REDIS_URL
// (default redis://127.0.0.1:6379/0). For a rediss:// URL whose server
// certificate is signed by a private CA, set REDIS_TLS_CA to the CA's PEM file
// (scripts/redis-tls.sh writes both).
//
// Tests never skip for lack of Redis: they fail with a message that says how
// to start one. `scripts/with-redis.sh go test ./...` (what `make test` runs)
// and `scripts/with-redis-cluster.sh go test -tags cluster ./...` start one.
//
// All functions are safe for concurrent use by parallel tests.
package redistest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/rediskeys"
)

// DefaultURL is the Redis used when REDIS_URL is unset or empty.
const DefaultURL = "redis://127.0.0.1:6379/0"

// Environment variables read by this package.
const (
	// EnvURL names the variable holding the Redis URL (redis:// or rediss://).
	EnvURL = "REDIS_URL"
	// EnvClusterAddrs names the variable holding a comma-separated list of
	// Redis Cluster node addresses; when set it wins over EnvURL.
	EnvClusterAddrs = "REDIS_CLUSTER_ADDRS"
	// EnvTLSCA names the variable holding a PEM CA file trusted for rediss:// URLs
	// in addition to the system roots.
	EnvTLSCA = "REDIS_TLS_CA"
)

const (
	// pingTimeout bounds the reachability check in Client.
	pingTimeout = 3 * time.Second
	// cleanupTimeout bounds the key deletion registered by Prefix.
	cleanupTimeout = 30 * time.Second
	// maxNameLen is how much of the sanitized test name goes into a prefix.
	maxNameLen = 40
)

// URL returns $REDIS_URL, or DefaultURL if it is unset or empty.
func URL() string {
	if u := strings.TrimSpace(os.Getenv(EnvURL)); u != "" {
		return u
	}
	return DefaultURL
}

// IsCluster reports whether REDIS_CLUSTER_ADDRS is set, that is whether Client
// returns a *redis.ClusterClient.
func IsCluster() bool {
	return len(clusterAddrs()) > 0
}

// Client returns a client for the test Redis: a *redis.ClusterClient over
// REDIS_CLUSTER_ADDRS if that is set, else a *redis.Client for URL(). It pings
// the server (3 s timeout) and calls t.Fatalf, saying how to start a Redis, if
// it does not answer; it never skips. The client is closed in t.Cleanup.
func Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	c, where, err := newClient()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		if IsCluster() {
			t.Fatalf("no Redis Cluster at %s: run `make test-cluster` (it starts one), "+
				"or scripts/with-redis-cluster.sh, or fix/unset %s: %v", where, EnvClusterAddrs, err)
		}
		t.Fatalf("no Redis at %s: run `make test` (it starts one), or start redis-server, "+
			"or set REDIS_URL: %v", where, err)
	}
	return c
}

// Prefix returns a key prefix unique to this test run, of the form
// "test:<name>-<8 hex digits>:", where <name> is t.Name() lower-cased, with
// every character outside [a-z0-9_-] replaced by '_', cut to 40 characters.
// A t.Cleanup deletes every key that starts with the prefix (SCAN MATCH on
// every master, then UNLINK one key per command), so tests need not.
//
// The prefix has no hash tag: on a cluster its keys spread over all slots.
func Prefix(t testing.TB) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	prefix := "test:" + sanitize(t.Name()) + "-" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		if err := deletePrefix(prefix); err != nil && !t.Failed() {
			t.Errorf("redistest: deleting keys %s*: %v", prefix, err)
		}
	})
	return prefix
}

// sanitize maps name to [a-z0-9_-], at most maxNameLen characters.
func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if b.Len() == maxNameLen {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// clusterAddrs parses REDIS_CLUSTER_ADDRS.
func clusterAddrs() []string {
	var addrs []string
	for a := range strings.SplitSeq(os.Getenv(EnvClusterAddrs), ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// newClient builds the client Client returns, without pinging it, and says
// where it points (without the password).
func newClient() (redis.UniversalClient, string, error) {
	if addrs := clusterAddrs(); len(addrs) > 0 {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs}),
			EnvClusterAddrs + "=" + strings.Join(addrs, ","), nil
	}
	raw := URL()
	where := bus.RedactURL(raw)
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return nil, where, fmt.Errorf("%s=%s is not a valid Redis URL (want redis://[user:pass@]host:port/db or rediss://...): %w",
			EnvURL, where, err)
	}
	if opts.TLSConfig != nil {
		if err := addCA(opts.TLSConfig); err != nil {
			return nil, where, err
		}
	}
	return redis.NewClient(opts), where, nil
}

// addCA makes cfg trust the CA in $REDIS_TLS_CA, if set, besides the system roots.
func addCA(cfg *tls.Config) error {
	file := os.Getenv(EnvTLSCA)
	if file == "" {
		return nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading %s: %w", EnvTLSCA, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s=%s holds no PEM certificate", EnvTLSCA, file)
	}
	cfg.RootCAs = pool
	return nil
}

// deletePrefix deletes every key starting with prefix from the test Redis,
// on every master of a cluster (see rediskeys.DeletePrefix).
func deletePrefix(prefix string) error {
	c, _, err := newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	return rediskeys.DeletePrefix(ctx, c, prefix)
}
