// Package rediskeys finds and deletes the keys under a prefix, on a single
// Redis or a Redis Cluster. It is shared by the test helpers (redistest), the
// benchmark (bench) and the demo (internal/demo), which all write under a key
// prefix of their own and delete it when they are done.
//
// Its functions are safe for concurrent use.
package rediskeys

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ScanCount is the COUNT hint of the SCANs DeletePrefix pages with.
const ScanCount = 1000

// ErrUnsupportedClient is returned by DeletePrefix for a client that is
// neither a *redis.Client nor a *redis.ClusterClient (a *redis.Ring, say).
var ErrUnsupportedClient = errors.New("unsupported Redis client: want a *redis.Client or a *redis.ClusterClient")

// EscapeGlob escapes the characters special to Redis glob patterns (* ? [ ]
// and \), so that s matches literally in SCAN MATCH or KEYS.
func EscapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Pattern returns the glob pattern that matches every key starting with
// prefix literally: EscapeGlob(prefix) + "*".
func Pattern(prefix string) string { return EscapeGlob(prefix) + "*" }

// DeletePrefix deletes every key that starts with prefix (literally: glob
// characters in it are escaped). It SCANs with MATCH, ScanCount keys a page,
// and UNLINKs each page's keys one key per command in one pipeline, so that
// a cluster client routes each to its slot. On a *redis.ClusterClient it
// scans every master (ForEachMaster, concurrently); on a *redis.Client the
// one server. Any other client gives ErrUnsupportedClient. It stops at the
// first error, which names the command and the server; keys deleted before
// it stay deleted.
func DeletePrefix(ctx context.Context, c redis.UniversalClient, prefix string) error {
	pattern := Pattern(prefix)
	switch c := c.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return scanUnlink(ctx, node, c, pattern)
		})
	case *redis.Client:
		return scanUnlink(ctx, c, c, pattern)
	default:
		return fmt.Errorf("%w (got %T)", ErrUnsupportedClient, c)
	}
}

// scanUnlink SCANs node for keys matching pattern and UNLINKs them through c,
// one key per command (pipelined per SCAN page).
func scanUnlink(ctx context.Context, node *redis.Client, c redis.Cmdable, pattern string) error {
	var cursor uint64
	for {
		keys, next, err := node.Scan(ctx, cursor, pattern, ScanCount).Result()
		if err != nil {
			return fmt.Errorf("SCAN %s on %s: %w", pattern, node.Options().Addr, err)
		}
		if len(keys) > 0 {
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys {
					p.Unlink(ctx, k)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("UNLINK %d keys from %s: %w", len(keys), node.Options().Addr, err)
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}
