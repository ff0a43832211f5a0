package scalesim

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
)

// Measure runs the three operations the model needs against the Redis
// behind client, which should be a server of its own (nothing else using
// it), and returns Redis's own CPU for each (INFO cpu, user + system) per
// event: a bus publish of a user-addressed event (the dedup script, the XADD
// to its stream and the copy to the push stream), a bus consumer group
// reading and acking it, and one gateway's XREAD of the push stream. It
// also reads the bytes Redis holds per retained entry (MEMORY USAGE).
func Measure(ctx context.Context, client *redis.Client, events int) (RedisCosts, error) {
	var rc RedisCosts
	prefix := fmt.Sprintf("scalesim:%d:", time.Now().UnixNano())
	defer cleanup(client, prefix)
	b, err := bus.New(bus.Config{ServiceName: "scalesim", Client: client, StreamPrefix: prefix}, watermill.NopLogger{})
	if err != nil {
		return rc, err
	}
	defer b.Close()
	const typ = "scale.measured"
	type payload struct {
		PhotoID string `json:"photoId"`
		OwnerID string `json:"ownerId"`
		Size    int    `json:"size"`
		Path    string `json:"path"`
	}

	// Publish: batches of 100, as a busy service's publisher sends them.
	// The last run (user-addressed, dedup on) is the one the stream and
	// push stream keep for the phases below.
	publish := func(b *bus.Bus, typ string, addressed bool) (float64, error) {
		cpu0, err := redisCPU(ctx, client)
		if err != nil {
			return 0, err
		}
		for i := 0; i < events; i += 100 {
			batch := make([]*message.Message, 0, 100)
			for j := i; j < min(events, i+100); j++ {
				var opts []bus.Option
				if addressed {
					opts = append(opts, bus.WithUser(fmt.Sprintf("u%d", j%1000)))
				}
				m, err := bus.NewMessage(ctx, payload{PhotoID: fmt.Sprintf("p%d", j), OwnerID: fmt.Sprintf("u%d", j%1000), Size: 123456, Path: "/photos/2026/12/04/original.jpg"}, opts...)
				if err != nil {
					return 0, err
				}
				batch = append(batch, m)
			}
			if err := b.Publisher().Publish(typ, batch...); err != nil {
				return 0, err
			}
		}
		cpu1, err := redisCPU(ctx, client)
		return (cpu1 - cpu0) / float64(events), err
	}
	nodedup, err := bus.New(bus.Config{ServiceName: "scalesim", Client: client, StreamPrefix: prefix + "nodedup:", DedupWindow: -1}, watermill.NopLogger{})
	if err != nil {
		return rc, err
	}
	defer nodedup.Close()
	if rc.PublishNoDedupUs, err = publish(nodedup, typ, true); err != nil {
		return rc, err
	}
	if rc.PublishUnaddressedUs, err = publish(b, "scale.unaddressed", false); err != nil {
		return rc, err
	}
	if rc.PublishUs, err = publish(b, typ, true); err != nil {
		return rc, err
	}

	// Consume with one consumer group (the plain bus subscriber: the
	// router's middleware adds no Redis commands).
	sub, err := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "scalesim.measure"})
	if err != nil {
		return rc, err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cpu0, err := redisCPU(ctx, client)
	if err != nil {
		return rc, err
	}
	ch, err := sub.Subscribe(cctx, typ)
	if err != nil {
		return rc, err
	}
	for n := 0; n < events; n++ {
		select {
		case m := <-ch:
			m.Ack()
		case <-cctx.Done():
			return rc, fmt.Errorf("consumed %d of %d: %w", n, events, cctx.Err())
		}
	}
	// Let the last acks reach Redis before reading the clock.
	for cctx.Err() == nil {
		p, err := client.XPending(ctx, b.Config().StreamKey(typ), "scalesim.measure").Result()
		if err == nil && p.Count == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cpu1, err := redisCPU(ctx, client)
	if err != nil {
		return rc, err
	}
	rc.ConsumeUs = (cpu1 - cpu0) / float64(events)
	cancel()
	if err := sub.Close(); err != nil {
		return rc, err
	}

	// One gateway's read of the push stream: XREAD COUNT 256 from the
	// start, as gateway/hub.go reads it.
	push := b.Config().PushKey()
	cpu0, err = redisCPU(ctx, client)
	if err != nil {
		return rc, err
	}
	read, pos := 0, "0"
	for read < events {
		res, err := client.XRead(ctx, &redis.XReadArgs{Streams: []string{push, pos}, Count: 256}).Result()
		if err != nil {
			return rc, fmt.Errorf("read %d of %d push entries: %w", read, events, err)
		}
		for _, s := range res {
			read += len(s.Messages)
			pos = s.Messages[len(s.Messages)-1].ID
		}
	}
	cpu1, err = redisCPU(ctx, client)
	if err != nil {
		return rc, err
	}
	rc.PushReadUs = (cpu1 - cpu0) / float64(events)

	streamBytes, err := client.MemoryUsage(ctx, b.Config().StreamKey(typ), 0).Result()
	if err != nil {
		return rc, err
	}
	pushBytes, err := client.MemoryUsage(ctx, push, 0).Result()
	if err != nil {
		return rc, err
	}
	rc.EntryBytes = float64(streamBytes) / float64(events)
	rc.PushEntryBytes = float64(pushBytes) / float64(events)
	// The deduplication window keeps one key per event and stream for
	// DedupWindow (2 min by default).
	keys, _, err := client.Scan(ctx, 0, prefix+"$dedup:*", 100).Result()
	if err != nil || len(keys) == 0 {
		return rc, fmt.Errorf("find a dedup key: %v", err)
	}
	dk, err := client.MemoryUsage(ctx, keys[0], 0).Result()
	if err != nil {
		return rc, err
	}
	rc.DedupKeyBytes = float64(dk)

	// For comparison: the same number of plain XADDs (MAXLEN ~, the same
	// fields as a bus entry), pipelined 100 at a time, as a go-redis
	// producer writes them.
	sample, err := client.XRangeN(ctx, b.Config().StreamKey(typ), "-", "+", 1).Result()
	if err != nil || len(sample) == 0 {
		return rc, fmt.Errorf("read a sample entry: %v", err)
	}
	raw := prefix + "raw"
	cpu0, err = redisCPU(ctx, client)
	if err != nil {
		return rc, err
	}
	for i := 0; i < events; i += 100 {
		pipe := client.Pipeline()
		for j := i; j < min(events, i+100); j++ {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: raw, MaxLen: 1_000_000, Approx: true, Values: sample[0].Values})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return rc, err
		}
	}
	cpu1, err = redisCPU(ctx, client)
	if err != nil {
		return rc, err
	}
	rc.RawXAddUs = (cpu1 - cpu0) / float64(events)
	return rc, nil
}

// redisCPU is the server's CPU time so far, user + system, in microseconds.
func redisCPU(ctx context.Context, c *redis.Client) (float64, error) {
	info, err := c.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (k != "used_cpu_user" && k != "used_cpu_sys") {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("INFO cpu %s: %w", k, err)
		}
		total += f
	}
	return total * 1e6, nil
}

func cleanup(c *redis.Client, prefix string) {
	ctx := context.Background()
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return
		}
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
		if cursor = next; cursor == 0 {
			return
		}
	}
}

// ScriptCosts are Redis's own time per command (INFO commandstats
// usec_per_call: command execution only, without reading and parsing the
// request) for the ways of writing one entry of ten 30-byte fields,
// pipelined 100 at a time: where the deduplication script's cost comes from.
type ScriptCosts struct {
	PlainXAdd    float64 `json:"plain_xadd_us"`     // XADD MAXLEN ~
	NoopScript   float64 `json:"noop_script_us"`    // EVALSHA "return 1" with the same arguments
	XAddInScript float64 `json:"xadd_in_script_us"` // EVALSHA of redis.call('XADD', …unpack(ARGV))
	DedupScript  float64 `json:"dedup_script_us"`   // EVALSHA of bus/lua/dedup_xadd.lua (GET, XADD, SET PX)
}

// MeasureScripts measures ScriptCosts on client's server, which should be
// one of its own: it reads the command statistics before and after each
// way (it never resets them), so other clients' commands of the same name
// would be counted in. dedupScript is the source of bus/lua/dedup_xadd.lua.
func MeasureScripts(ctx context.Context, client *redis.Client, dedupScript string, events int) (ScriptCosts, error) {
	var sc ScriptCosts
	prefix := fmt.Sprintf("scalesim:%d:", time.Now().UnixNano())
	defer cleanup(client, prefix)
	load := func(src string) (string, error) { return client.ScriptLoad(ctx, src).Result() }
	noop, err := load("return 1")
	if err != nil {
		return sc, err
	}
	xadd, err := load("return redis.call('XADD', KEYS[1], unpack(ARGV, 2))")
	if err != nil {
		return sc, err
	}
	dedup, err := load(dedupScript)
	if err != nil {
		return sc, err
	}
	fields := make([]any, 0, 20)
	for i := range 10 {
		fields = append(fields, fmt.Sprintf("field%d", i), strings.Repeat("v", 30))
	}
	args := append([]any{"120000", "MAXLEN", "~", "1000000", "*"}, fields...)
	run := func(cmd string, add func(p redis.Pipeliner, i int)) (float64, error) {
		calls0, usec0, err := commandStat(ctx, client, cmd)
		if err != nil {
			return 0, err
		}
		for i := 0; i < events; i += 100 {
			p := client.Pipeline()
			for j := i; j < min(events, i+100); j++ {
				add(p, j)
			}
			if _, err := p.Exec(ctx); err != nil {
				return 0, err
			}
		}
		calls1, usec1, err := commandStat(ctx, client, cmd)
		if err != nil {
			return 0, err
		}
		if calls1 <= calls0 {
			return 0, fmt.Errorf("INFO commandstats counted no %s", cmd)
		}
		return float64(usec1-usec0) / float64(calls1-calls0), nil
	}
	if sc.PlainXAdd, err = run("xadd", func(p redis.Pipeliner, _ int) {
		p.XAdd(ctx, &redis.XAddArgs{Stream: prefix + "plain", MaxLen: 1_000_000, Approx: true, Values: fields})
	}); err != nil {
		return sc, err
	}
	if sc.NoopScript, err = run("evalsha", func(p redis.Pipeliner, _ int) { p.EvalSha(ctx, noop, []string{prefix + "noop"}, args...) }); err != nil {
		return sc, err
	}
	if sc.XAddInScript, err = run("evalsha", func(p redis.Pipeliner, _ int) { p.EvalSha(ctx, xadd, []string{prefix + "xadd"}, args...) }); err != nil {
		return sc, err
	}
	sc.DedupScript, err = run("evalsha", func(p redis.Pipeliner, i int) {
		p.EvalSha(ctx, dedup, []string{prefix + "dedup", fmt.Sprintf("%s$dedup:{%sdedup}:%d", prefix, prefix, i)}, args...)
	})
	return sc, err
}

// commandStat reads the calls and usec of cmd from INFO commandstats
// (zero when it has not run yet).
func commandStat(ctx context.Context, c *redis.Client, cmd string) (calls, usec int64, err error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "calls":
				calls, err = strconv.ParseInt(v, 10, 64)
			case "usec":
				usec, err = strconv.ParseInt(v, 10, 64)
			}
			if err != nil {
				return 0, 0, fmt.Errorf("INFO commandstats %s: %w", cmd, err)
			}
		}
	}
	return calls, usec, nil
}
