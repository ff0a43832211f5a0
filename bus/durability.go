package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultDurabilityTimeout is how long a durable publish waits for its
// replicas when Durability.Timeout is zero.
const DefaultDurabilityTimeout = time.Second

// ErrNotReplicated is returned (wrapped) by a publish whose entries were
// written on the primary but acknowledged by fewer replicas than
// Durability.Replicas within Durability.Timeout. The entries may or may not
// survive a failover; publishing again is safe where the publisher
// deduplicates by event id, and at worst gives a duplicate, never a loss.
var ErrNotReplicated = errors.New("eventbus: publish not acknowledged by enough replicas")

// Durability makes a publish wait until its entries are on replicas, so that
// a primary that fails right after acknowledging does not take them with it.
// Redis replication is asynchronous: without it an acknowledged publish can
// be lost by a failover.
//
// With Replicas > 0 every publish ends with WAIT Replicas Timeout on the
// connection (and, in a cluster, on each master) that made its writes, and
// returns an error wrapping ErrNotReplicated when fewer replicas
// acknowledged. WAIT does not make Redis strongly consistent (a replica that
// acknowledged may still not be the one promoted), but with the sentinels or
// the cluster promoting the most up-to-date replica it closes the window in
// which a failover loses acknowledged events. The cost is one replication
// round trip per publish (see docs/reliability.md).
type Durability struct {
	// Replicas is how many replicas must acknowledge each publish. 0 (the
	// default) does not wait.
	Replicas int
	// Timeout bounds the wait. Default DefaultDurabilityTimeout. Keep it
	// below the client's read timeout (go-redis default 3 s).
	Timeout time.Duration
}

func (d *Durability) setDefaults() {
	if d.Replicas > 0 && d.Timeout == 0 {
		d.Timeout = DefaultDurabilityTimeout
	}
}

func (d Durability) validate() []error {
	var errs []error
	if d.Replicas < 0 {
		errs = append(errs, fmt.Errorf("Durability.Replicas %d must not be negative", d.Replicas))
	}
	if d.Timeout < 0 {
		errs = append(errs, fmt.Errorf("Durability.Timeout %s must not be negative", d.Timeout))
	}
	if d.Timeout > 0 && d.Timeout < time.Millisecond {
		errs = append(errs, fmt.Errorf("Durability.Timeout %s: use at least 1ms (WAIT counts milliseconds)", d.Timeout))
	}
	return errs
}

// durable reports whether publishes wait for replicas (and so must take the
// pipeline path, whose connection the WAIT shares).
func (p *Publisher) durable() bool { return p.cfg.Durability.Replicas > 0 }

// exec runs the publish pipeline and, with Durability on, waits for the
// replicas. WAIT counts the replication offset of its own connection's
// writes, so it must run on the connection that made them: on one server
// (or behind Sentinel) it is the pipeline's last command; on a cluster the
// pipeline's commands are split by the master that owns their slot
// (ClusterClient.MasterForKey) and each master's share runs in a pipeline of
// its own that ends with WAIT. A keyless WAIT sent through the cluster client
// would go to an arbitrary node.
func (p *Publisher) exec(ctx context.Context, pipe redis.Pipeliner) error {
	d := p.cfg.Durability
	if d.Replicas <= 0 {
		_, err := pipe.Exec(ctx)
		return err
	}
	cc, ok := p.client.(*redis.ClusterClient)
	if !ok {
		wait := queueWait(ctx, pipe, d)
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		return checkReplicas(wait, d, "")
	}
	cmds := append([]redis.Cmder(nil), pipe.Cmds()...)
	pipe.Discard()
	type group struct {
		node *redis.Client
		pipe redis.Pipeliner
		addr string
	}
	var groups []*group
	for _, cmd := range cmds {
		node, err := cc.MasterForKey(ctx, firstKey(cmd))
		if err != nil {
			return fmt.Errorf("finding the master of %s: %w", firstKey(cmd), err)
		}
		var g *group
		for _, x := range groups {
			if x.node == node {
				g = x
				break
			}
		}
		if g == nil {
			g = &group{node: node, pipe: node.Pipeline(), addr: node.Options().Addr}
			groups = append(groups, g)
		}
		_ = g.pipe.Process(ctx, cmd)
	}
	var errs []error
	for _, g := range groups {
		wait := queueWait(ctx, g.pipe, d)
		if _, err := g.pipe.Exec(ctx); err != nil {
			errs = append(errs, fmt.Errorf("on %s: %w", g.addr, err))
			continue
		}
		if err := checkReplicas(wait, d, g.addr); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// queueWait adds WAIT to pipe (Pipeliner has no Wait method). The pipeline
// reads with the client's ReadTimeout, hence the advice on Timeout.
func queueWait(ctx context.Context, pipe redis.Pipeliner, d Durability) *redis.IntCmd {
	cmd := redis.NewIntCmd(ctx, "wait", d.Replicas, d.Timeout.Milliseconds())
	_ = pipe.Process(ctx, cmd)
	return cmd
}

func checkReplicas(wait *redis.IntCmd, d Durability, addr string) error {
	n, err := wait.Result()
	if err != nil {
		return fmt.Errorf("%w: WAIT: %w", ErrNotReplicated, err)
	}
	if n < int64(d.Replicas) {
		on := ""
		if addr != "" {
			on = " on " + addr
		}
		return fmt.Errorf("%w: %d of %d replica(s) acknowledged within %s%s", ErrNotReplicated, n, d.Replicas, d.Timeout, on)
	}
	return nil
}

// firstKey returns the key (or channel) that routes cmd in a cluster: the
// first argument after the name, or for EVAL/EVALSHA/FCALL the first key.
func firstKey(cmd redis.Cmder) string {
	args := cmd.Args()
	i := 1
	switch strings.ToLower(cmd.Name()) {
	case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
		i = 3
	}
	if len(args) <= i {
		return ""
	}
	return fmt.Sprint(args[i])
}
