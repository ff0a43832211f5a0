package bus

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"
)

// registryWatcher holds the one Pub/Sub connection of a Bus that listens for
// new-type notifications and forwards each to the pattern subscriptions it
// matches. A notification lost (say during a reconnect) is repaired by each
// subscription's periodic resync of the registry set.
type registryWatcher struct {
	client  redis.UniversalClient
	channel string
	logger  watermill.LoggerAdapter

	mu     sync.Mutex
	subs   map[*subscription]struct{}
	ps     *redis.PubSub
	done   chan struct{}
	closed bool
}

func newRegistryWatcher(client redis.UniversalClient, channel string, logger watermill.LoggerAdapter) *registryWatcher {
	return &registryWatcher{client: client, channel: channel, logger: logger, subs: map[*subscription]struct{}{}}
}

// add registers sub, starting the Pub/Sub subscription first if needed and
// waiting for Redis to confirm it, so that a type registered after add
// returns is always announced to sub.
func (w *registryWatcher) add(ctx context.Context, sub *subscription) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if w.ps == nil {
		ps := w.client.Subscribe(ctx, w.channel)
		if _, err := ps.Receive(ctx); err != nil {
			_ = ps.Close()
			return err
		}
		w.ps = ps
		w.done = make(chan struct{})
		go w.loop(ps.Channel(), w.done)
	}
	w.subs[sub] = struct{}{}
	return nil
}

func (w *registryWatcher) remove(sub *subscription) {
	w.mu.Lock()
	delete(w.subs, sub)
	w.mu.Unlock()
}

func (w *registryWatcher) loop(ch <-chan *redis.Message, done chan struct{}) {
	defer close(done)
	for m := range ch {
		if ValidateType(m.Payload) != nil {
			continue
		}
		w.mu.Lock()
		for sub := range w.subs {
			if Match(sub.topic, m.Payload) {
				select {
				case sub.newTypes <- m.Payload:
				default: // full: the resync will find it
				}
			}
		}
		w.mu.Unlock()
	}
}

func (w *registryWatcher) close() {
	w.mu.Lock()
	w.closed = true
	ps, done := w.ps, w.done
	w.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
		<-done
	}
}

// DefaultDiscoveryInterval is how often a bus sweeps Redis for streams
// missing from the type registry (Config.DiscoveryInterval).
const DefaultDiscoveryInterval = 6 * DefaultResyncInterval

// discoveryScanCount is the COUNT hint of the discovery sweep's SCANs.
const discoveryScanCount = 1000

// Discover sweeps Redis once for streams under the prefix that the type
// registry lacks — streams written by a plain XADD (a non-Go producer that
// skipped the registry SADD), or all of them after Redis lost the registry —
// and adds each to the registry and announces it on the registry channel, as
// a publisher does, so that pattern subscriptions pick it up at once. It
// returns the types it added. It SCANs (MATCH <prefix>*, TYPE stream) the
// one server, or every master of a Redis Cluster. The bus runs it every
// Config.DiscoveryInterval by itself.
func (b *Bus) Discover(ctx context.Context) ([]string, error) {
	found, err := ScanStreamTypes(ctx, b.client, b.cfg.StreamPrefix)
	if err != nil {
		return nil, err
	}
	if len(found) == 0 {
		return nil, nil
	}
	known, err := b.client.SMembers(ctx, b.cfg.RegistryKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("read type registry: %w", err)
	}
	have := make(map[string]bool, len(known))
	for _, t := range known {
		have[t] = true
	}
	var added []string
	for _, t := range found {
		if !have[t] {
			added = append(added, t)
		}
	}
	if len(added) == 0 {
		return nil, nil
	}
	slices.Sort(added)
	pipe := b.client.Pipeline()
	for _, t := range added {
		pipe.SAdd(ctx, b.cfg.RegistryKey(), t)
		pipe.Publish(ctx, b.cfg.RegistryKey(), t)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("add %d discovered type(s) to the registry: %w", len(added), err)
	}
	b.logger.Info("Discovered streams missing from the type registry; added them", watermill.LogFields{"types": strings.Join(added, ","), "count": len(added)})
	return added, nil
}

// ScanStreamTypes returns, sorted, the event types of every stream key under
// prefix, registered or not: SCAN MATCH <prefix>* TYPE stream on the one
// server (a *redis.Client) or on every master of a *redis.ClusterClient.
func ScanStreamTypes(ctx context.Context, client redis.UniversalClient, prefix string) ([]string, error) {
	var mu sync.Mutex
	seen := map[string]bool{}
	scan := func(ctx context.Context, node *redis.Client) error {
		var cursor uint64
		for {
			keys, next, err := node.ScanType(ctx, cursor, escapeGlob(prefix)+"*", discoveryScanCount, "stream").Result()
			if err != nil {
				return fmt.Errorf("SCAN TYPE stream on %s: %w", node.Options().Addr, err)
			}
			mu.Lock()
			for _, k := range keys {
				if t, ok := strings.CutPrefix(k, prefix); ok && ValidateType(t) == nil {
					seen[t] = true
				}
			}
			mu.Unlock()
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	var err error
	switch c := client.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, c)
	default:
		return nil, fmt.Errorf("discovery sweep: unsupported client %T (use a *redis.Client or a *redis.ClusterClient, or set DiscoveryInterval -1)", client)
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(seen))
	for t := range seen {
		out = append(out, t)
	}
	slices.Sort(out)
	return out, nil
}

// escapeGlob escapes the characters special to Redis glob patterns, so that
// s matches literally in SCAN MATCH.
func escapeGlob(s string) string {
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

func startDiscovery(b *Bus) *periodic {
	return startPeriodic(b, "Discovery sweep", b.cfg.StreamPrefix+"$discovery", b.cfg.DiscoveryInterval, func(ctx context.Context) error {
		_, err := b.Discover(ctx)
		return err
	})
}
