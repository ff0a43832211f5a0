package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/internal/rediskeys"
)

// ErrCluster is returned for a Redis Cluster (a *redis.ClusterClient, or a
// client whose server has cluster_enabled): connection counts use CLIENT
// LIST and Redis CPU uses INFO, which a cluster answers per node.
var ErrCluster = errors.New("a Redis Cluster is not supported (CLIENT LIST and INFO answer per node): point the benchmark at a single Redis")

// ErrUnsupportedClient is returned for a client that is neither a
// *redis.Client nor a *redis.ClusterClient (a *redis.Ring, say).
var ErrUnsupportedClient = errors.New("unsupported Redis client: use a *redis.Client (redis.NewClient, redis.NewFailoverClient)")

// scanCount is the COUNT hint of the SCAN that looks for a prefix's keys.
const scanCount = 1000

// Target is the Redis the scenarios run on and the key prefix they write
// under. Each scenario opens its own connections with the options of the
// Target's client (so every variant starts with an empty pool, and
// watermill-redisstream, which closes the client it is given, closes its
// own) and closes them in its Close; the Target's client is only used for
// set-up work outside the measurements (prefilling streams, CLIENT LIST,
// INFO) and is never closed.
//
// A Target does not delete the keys written under its prefix: Run does, and
// the go test benchmarks use redistest.Prefix, which does.
type Target struct {
	admin  *redis.Client
	prefix string
}

// NewTarget returns a Target on client under prefix. client must be a
// *redis.Client: a *redis.ClusterClient gives ErrCluster, anything else
// ErrUnsupportedClient. The prefix must not contain '{' or '}' (the bus
// refuses hash tags) and should hold no keys yet.
func NewTarget(client redis.UniversalClient, prefix string) (*Target, error) {
	switch c := client.(type) {
	case *redis.Client:
		if c == nil {
			return nil, fmt.Errorf("%w: the client is nil", ErrUnsupportedClient)
		}
		if strings.ContainsAny(prefix, "{}") {
			return nil, fmt.Errorf("%w: prefix %q must not contain '{' or '}'", ErrInvalidOptions, prefix)
		}
		return &Target{admin: c, prefix: prefix}, nil
	case *redis.ClusterClient:
		return nil, ErrCluster
	case nil:
		return nil, fmt.Errorf("%w: no client", ErrUnsupportedClient)
	default:
		return nil, fmt.Errorf("%w (got %T)", ErrUnsupportedClient, client)
	}
}

// Prefix returns the key prefix the Target writes under.
func (t *Target) Prefix() string { return t.prefix }

// sub returns a Target on the same Redis under prefix + name + ":".
func (t *Target) sub(name string) *Target {
	return &Target{admin: t.admin, prefix: t.prefix + name + ":"}
}

// newClient opens a client with the options of the Target's client; when
// name is not empty every connection it opens carries CLIENT SETNAME name.
// The caller closes it.
func (t *Target) newClient(name string) *redis.Client {
	opt := *t.admin.Options()
	if name != "" {
		opt.ClientName = name
	}
	return redis.NewClient(&opt)
}

// checkNotCluster returns ErrCluster when the server is a cluster node.
func checkNotCluster(ctx context.Context, c *redis.Client) error {
	info, err := c.Info(ctx, "cluster").Result()
	if err != nil {
		return fmt.Errorf("INFO cluster: %w", err)
	}
	if strings.Contains(info, "cluster_enabled:1") {
		return ErrCluster
	}
	return nil
}

// infoField returns the value of field in an INFO reply, or "".
func infoField(info, field string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// hasKeys reports whether any key starts with prefix.
func hasKeys(ctx context.Context, c *redis.Client, prefix string) (bool, error) {
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, rediskeys.Pattern(prefix), scanCount).Result()
		if err != nil {
			return false, fmt.Errorf("SCAN %s*: %w", prefix, err)
		}
		if len(keys) > 0 {
			return true, nil
		}
		if next == 0 {
			return false, nil
		}
		cursor = next
	}
}
