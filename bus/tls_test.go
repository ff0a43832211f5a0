//go:build tls

// TLS tests run only with -tags tls, against the TLS-only, ACL-protected
// Redis that scripts/redis-tls.sh starts (its env file sets REDIS_TLS_URL, a
// rediss://eventbus:PASSWORD@127.0.0.1:PORT/0 URL, and REDIS_TLS_CA, the PEM
// of the throwaway CA that signed the server certificate):
//
//	make test-tls
//	# or by hand:
//	scripts/redis-tls.sh start /tmp/rtls
//	set -a; . /tmp/rtls/env; set +a
//	go test -race -count=1 -tags tls -run TLS ./bus/
//	scripts/redis-tls.sh stop /tmp/rtls
//
// With the tag but without the variables they fail rather than skip.

package bus_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

// tlsLogger records every line logged, at every level, with its fields.
type tlsLogger struct {
	mu    sync.Mutex
	lines []string
	with  watermill.LogFields
}

func (l *tlsLogger) add(level, msg string, err error, fields watermill.LogFields) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf("%s %s err=%v fields=%v with=%v", level, msg, err, fields, l.with))
}
func (l *tlsLogger) Error(msg string, err error, f watermill.LogFields) { l.add("ERROR", msg, err, f) }
func (l *tlsLogger) Info(msg string, f watermill.LogFields)             { l.add("INFO", msg, nil, f) }
func (l *tlsLogger) Debug(msg string, f watermill.LogFields)            { l.add("DEBUG", msg, nil, f) }
func (l *tlsLogger) Trace(msg string, f watermill.LogFields)            { l.add("TRACE", msg, nil, f) }
func (l *tlsLogger) With(f watermill.LogFields) watermill.LoggerAdapter {
	// Shares the record; keeps the fields for the lines it logs.
	return &tlsChild{root: l, with: f}
}

type tlsChild struct {
	root *tlsLogger
	with watermill.LogFields
}

func (c *tlsChild) Error(msg string, err error, f watermill.LogFields) {
	c.root.add("ERROR", msg, err, c.with.Add(f))
}
func (c *tlsChild) Info(msg string, f watermill.LogFields) {
	c.root.add("INFO", msg, nil, c.with.Add(f))
}
func (c *tlsChild) Debug(msg string, f watermill.LogFields) {
	c.root.add("DEBUG", msg, nil, c.with.Add(f))
}
func (c *tlsChild) Trace(msg string, f watermill.LogFields) {
	c.root.add("TRACE", msg, nil, c.with.Add(f))
}
func (c *tlsChild) With(f watermill.LogFields) watermill.LoggerAdapter {
	return &tlsChild{root: c.root, with: c.with.Add(f)}
}

func (l *tlsLogger) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// tlsEnv returns REDIS_TLS_URL, its password and REDIS_TLS_CA, failing with
// how to start the server when they are unset.
func tlsEnv(t *testing.T) (rawURL, password, caFile string) {
	t.Helper()
	rawURL, caFile = os.Getenv("REDIS_TLS_URL"), os.Getenv("REDIS_TLS_CA")
	if rawURL == "" || caFile == "" {
		t.Fatal("REDIS_TLS_URL and REDIS_TLS_CA are not set: run `make test-tls`, or " +
			"scripts/redis-tls.sh start DIR; set -a; . DIR/env; set +a; go test -tags tls -run TLS ./bus/")
	}
	u, err := url.Parse(rawURL)
	require.NoError(t, err, "REDIS_TLS_URL")
	password, ok := u.User.Password()
	require.True(t, ok && password != "" && u.User.Username() != "", "REDIS_TLS_URL must carry a user and a password")
	require.Equal(t, "rediss", u.Scheme)
	return rawURL, password, caFile
}

// tlsClient builds what the bus config cannot: a client for a rediss:// URL
// that trusts a private CA.
func tlsClient(t *testing.T, rawURL, caFile string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(rawURL)
	require.NoError(t, err)
	require.NotNil(t, opts.TLSConfig, "a rediss:// URL gives a TLS config")
	pem, err := os.ReadFile(caFile)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem), "no certificate in %s", caFile)
	opts.TLSConfig.RootCAs = pool
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip publishes an event and receives it on a subscriber of b.
func roundTrip(t *testing.T, b *bus.Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, b.Ping(ctx))
	sub, err := b.NewSubscriber(fastSub("tls"))
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "tls.checked")
	require.NoError(t, err)
	id, err := bus.Publish(ctx, b.Publisher(), "tls.checked", uploaded{PhotoID: "t1", Size: 7}, bus.WithRoom("r"))
	require.NoError(t, err)
	got := receive(t, ch, 1, 10*time.Second)[0]
	ev, err := bus.Decode[uploaded](got)
	require.NoError(t, err)
	assert.Equal(t, id, ev.ID)
	assert.Equal(t, uploaded{PhotoID: "t1", Size: 7}, ev.Data)
	require.NoError(t, sub.Close())
}

// tlsPrefix is a key prefix of the test's own under the default prefix,
// which the least-privilege ACL user of the TLS server is confined to.
func tlsPrefix() string { return bus.DefaultStreamPrefix + "tls-" + watermill.NewShortUUID()[:8] + ":" }

// cleanupTLSPrefix deletes the test's keys through the admin user (the bus's
// user may not UNLINK; redistest only knows REDIS_URL).
func cleanupTLSPrefix(t *testing.T, prefix string) {
	c := tlsAdmin(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			_ = c.Unlink(ctx, iter.Val()).Err()
		}
	})
}

// TestTLSEndToEndWithACLUser: a bus over TLS, as the ACL user of the URL,
// publishes and consumes; no line it logs holds the password.
func TestTLSEndToEndWithACLUser(t *testing.T) {
	rawURL, password, caFile := tlsEnv(t)
	c := tlsClient(t, rawURL, caFile)
	assert.Equal(t, "eventbus", c.Options().Username)
	require.NotNil(t, c.Options().TLSConfig)

	logger := &tlsLogger{}
	prefix := tlsPrefix()
	cleanupTLSPrefix(t, prefix)
	b, err := bus.New(bus.Config{ServiceName: "tls-svc", Client: c, StreamPrefix: prefix}, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	roundTrip(t, b)
	for _, line := range logger.all() {
		assert.NotContains(t, line, password, "a logged line holds the password")
	}
}

// TestTLSRedisURLWithPrivateCA: Config.RedisURL without Config.TLSConfig
// cannot reach a server whose certificate a private CA signed, because
// redis.ParseURL's TLS config verifies against the system roots. The error
// says so (unknown authority) and does not hold the password.
func TestTLSRedisURLWithPrivateCA(t *testing.T) {
	rawURL, password, _ := tlsEnv(t)
	logger := &tlsLogger{}
	b, err := bus.New(bus.Config{ServiceName: "tls-svc", RedisURL: rawURL, StreamPrefix: tlsPrefix()}, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = b.Ping(ctx)
	require.Error(t, err, "the test CA is not a system root: if this passes, SSL_CERT_FILE or the system store trusts it")
	var unknown x509.UnknownAuthorityError
	assert.True(t, errors.As(err, &unknown) || strings.Contains(err.Error(), "unknown authority"), "want an unknown-authority error, got %v", err)
	assert.NotContains(t, err.Error(), password)
	sub, err := b.NewSubscriber(fastSub("tls"))
	require.NoError(t, err)
	_, err = sub.Subscribe(ctx, "tls.checked")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), password)
	for _, line := range logger.all() {
		assert.NotContains(t, line, password)
	}
}

// TestTLSRedisURLWithTLSConfig: Config.TLSConfig with the private CA makes
// Config.RedisURL work end to end.
func TestTLSRedisURLWithTLSConfig(t *testing.T) {
	rawURL, password, caFile := tlsEnv(t)
	pem, err := os.ReadFile(caFile)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))
	logger := &tlsLogger{}
	b, err := bus.New(bus.Config{ServiceName: "tls-svc", RedisURL: rawURL, StreamPrefix: tlsPrefix(),
		TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, b.Ping(ctx))
	sub, err := b.NewSubscriber(fastSub("tlscfg"))
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "tls.cfg")
	require.NoError(t, err)
	id, err := bus.Publish(ctx, b.Publisher(), "tls.cfg", map[string]string{"over": "tls"})
	require.NoError(t, err)
	got := receive(t, ch, 1, 10*time.Second)[0]
	assert.Equal(t, id, got.UUID)
	for _, line := range logger.all() {
		assert.NotContains(t, line, password)
	}
}

// TestTLSRedisURLTrustedThroughSSLCertFile: the workarounds that need no
// code make Config.RedisURL work end to end: SSL_CERT_FILE naming the CA
// (instead of the system roots), or SSL_CERT_DIR naming a directory that
// holds it (added to the system roots: what deploy/k8s does). They are
// process-wide (Go reads them once, when it first loads the system roots),
// so the check runs in a child process.
func TestTLSRedisURLTrustedThroughSSLCertFile(t *testing.T) {
	if os.Getenv("EVENTBUS_TLS_CHILD") == "1" {
		rawURL, _, _ := tlsEnv(t)
		b, err := bus.New(bus.Config{ServiceName: "tls-svc", RedisURL: rawURL, StreamPrefix: tlsPrefix()}, nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close() })
		roundTrip(t, b)
		return
	}
	_, password, caFile := tlsEnv(t)
	pem, err := os.ReadFile(caFile)
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "redis-ca.crt"), pem, 0o600))
	for _, v := range []string{"SSL_CERT_FILE=" + caFile, "SSL_CERT_DIR=" + dir} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTLSRedisURLTrustedThroughSSLCertFile$", "-test.v", "-test.timeout=60s")
		for _, e := range os.Environ() {
			if !strings.HasPrefix(e, "SSL_CERT_") {
				cmd.Env = append(cmd.Env, e)
			}
		}
		cmd.Env = append(cmd.Env, "EVENTBUS_TLS_CHILD=1", v)
		out, err := cmd.CombinedOutput()
		assert.NotContains(t, string(out), password)
		require.NoError(t, err, "child with %s:\n%s", v, out)
	}
}

// TestTLSWrongPassword: a wrong password fails with an error that holds
// neither the wrong nor the right password, and nothing logged holds them.
func TestTLSWrongPassword(t *testing.T) {
	rawURL, password, caFile := tlsEnv(t)
	wrong := "not-the-" + password[:4] + "-Zq9wrongpass"
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	u.User = url.UserPassword(u.User.Username(), wrong)
	badURL := u.String()

	check := func(t *testing.T, what string, s string) {
		t.Helper()
		assert.NotContains(t, s, wrong, "%s holds the wrong password", what)
		assert.NotContains(t, s, password, "%s holds the password", what)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Through a client that trusts the CA: the TLS handshake passes, AUTH fails.
	c := tlsClient(t, badURL, caFile)
	logger := &tlsLogger{}
	b, err := bus.New(bus.Config{ServiceName: "tls-svc", Client: c, StreamPrefix: tlsPrefix()}, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	err = b.Ping(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "WRONGPASS")
	check(t, "the Ping error", err.Error())
	_, err = bus.Publish(ctx, b.Publisher(), "tls.checked", uploaded{PhotoID: "x"})
	require.Error(t, err)
	check(t, "the Publish error", err.Error())
	sub, err := b.NewSubscriber(fastSub("tls"))
	require.NoError(t, err)
	// Subscribe creates the consumer group before it returns, so it must
	// fail when it cannot (a plain topic: one XGROUP CREATE in a pipeline).
	_, err = sub.Subscribe(ctx, "tls.checked")
	if assert.Error(t, err, "Subscribe succeeded without creating its consumer group (the pipeline's error is ignored)") {
		check(t, "the Subscribe error", err.Error())
	}
	_, err = sub.Subscribe(ctx, "tls.*")
	if assert.Error(t, err) {
		check(t, "the pattern Subscribe error", err.Error())
	}
	time.Sleep(300 * time.Millisecond) // a subscription that did start logs its read errors
	// Through Config.RedisURL (fails earlier, on the certificate).
	b2, err := bus.New(bus.Config{ServiceName: "tls-svc", RedisURL: badURL}, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b2.Close() })
	err = b2.Ping(ctx)
	require.Error(t, err)
	check(t, "the RedisURL Ping error", err.Error())

	// A URL the config rejects.
	_, err = bus.New(bus.Config{ServiceName: "tls-svc", RedisURL: strings.Replace(badURL, "127.0.0.1", "[::1", 1)}, logger)
	require.ErrorIs(t, err, bus.ErrInvalidConfig)
	check(t, "the config error", err.Error())
	check(t, "RedactURL", bus.RedactURL(badURL))

	for _, line := range logger.all() {
		check(t, "a logged line", line)
	}
}
