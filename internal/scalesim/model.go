// Package scalesim is the capacity model and simulation behind
// docs/scale.md: how the bus and the gateway would scale past one Redis
// node (say 1 M browsers and 100 k events/s), fed by figures measured on the
// development machine (Measure, and the gateway benchmarks named in
// Inputs). It runs nothing against Redis except Measure; the tables in
// docs/scale.md are what Plan and Simulate print for the inputs recorded in
// testdata/inputs.json, and a test keeps them equal.
package scalesim

import (
	"fmt"
	"math"
	"strings"
)

// RedisCosts are Redis's own CPU per event (INFO cpu, user + system, in
// microseconds) and memory per retained entry, measured by Measure.
type RedisCosts struct {
	// PublishUs: one bus publish of a user-addressed event (dedup script,
	// XADD to its stream with the cap, the push-stream copy), in batches
	// of 100.
	PublishUs float64 `json:"publish_us"`
	// PublishNoDedupUs: the same with DedupWindow -1 (no script).
	PublishNoDedupUs float64 `json:"publish_no_dedup_us"`
	// PublishUnaddressedUs: dedup on, no push copy.
	PublishUnaddressedUs float64 `json:"publish_unaddressed_us"`
	// RawXAddUs: a plain pipelined XADD of the same entry (MAXLEN ~), for
	// comparison; the model does not use it.
	RawXAddUs float64 `json:"raw_xadd_us"`
	// ConsumeUs: one consumer group reading (XREADGROUP) and acking
	// (XACK) one event, with the subscriber's keepalive and heartbeat.
	ConsumeUs float64 `json:"consume_us"`
	// PushReadUs: one gateway reading one push-stream entry (XREAD COUNT
	// 256).
	PushReadUs float64 `json:"push_read_us"`
	// EntryBytes and PushEntryBytes: MEMORY USAGE of a type stream and of
	// the push stream divided by their entries.
	EntryBytes     float64 `json:"entry_bytes"`
	PushEntryBytes float64 `json:"push_entry_bytes"`
	// DedupKeyBytes: MEMORY USAGE of one deduplication key (one per event
	// and stream, kept for the dedup window).
	DedupKeyBytes float64 `json:"dedup_key_bytes"`
}

// GatewayCosts are the gateway's figures (docs/benchmarks.md, "Gateway
// load", and the benchmarks in gateway/dispatch_bench_test.go).
type GatewayCosts struct {
	// DeliveryUs: gateway CPU per delivery (one event to one stream),
	// make bench-gateway; the worst of its runs.
	DeliveryUs float64 `json:"delivery_us"`
	// FilterNs: CPU per connected stream and push entry for an entry that
	// is not for that stream (BenchmarkDispatchNotAddressed, 10,000
	// streams): today every entry is offered to every stream.
	FilterNs float64 `json:"filter_ns"`
	// DecodeUs: CPU to decode one push entry and render its frame
	// (BenchmarkRenderPushEntry), paid once per entry per gateway.
	DecodeUs float64 `json:"decode_us"`
	// StreamKiB: RSS per idle SSE stream.
	StreamKiB float64 `json:"stream_kib"`
}

// Inputs are the measured figures, with where they come from.
type Inputs struct {
	Redis   RedisCosts   `json:"redis"`
	Gateway GatewayCosts `json:"gateway"`
	Source  string       `json:"source"`
}

// Scenario is the load to carry.
type Scenario struct {
	Browsers        int     // connected SSE streams
	TabsPerUser     float64 // streams per online user
	EventsPerSec    float64 // events published on the bus
	Groups          float64 // consumer groups per event (handlers per type)
	UserFraction    float64 // of the events, addressed to one user (push copy)
	RoomFraction    float64 // of the events, addressed to a room (push copy)
	RoomMembers     float64 // connected streams per room, mean
	BroadcastPerSec float64 // events to every browser
	RetentionSec    float64 // how long type streams and push streams keep entries
	DedupSec        float64 // the publisher's deduplication window
	// HotTypeFraction: the share of the events of the busiest event type.
	// A type is one stream, one key, one slot: one Redis core carries it
	// whatever the number of shards.
	HotTypeFraction float64
}

// Machine is the unit a deployment is made of, and how full it may run.
type Machine struct {
	GatewayCores, GatewayGiB float64
	GatewayUtil              float64 // of cores and memory, at peak
	// GatewayStreams caps the streams one gateway holds, whatever its
	// memory: a gateway that stops sends them all reconnecting at once
	// (spread by the retry: jitter), and the kernel's socket buffers are
	// not in the process's RSS.
	GatewayStreams    int
	RedisUtil         float64 // of the one core that runs commands
	RedisGiB          float64 // dataset per shard
	RedisNICMBps      float64 // egress per Redis node, usable
	CoreHour, GiBHour float64 // prices, USD
	RedisReplicas     int     // replicas per shard (each a full copy)
}

// Design is a way of carrying the push traffic.
type Design struct {
	Name string
	// PushShards: how many push streams (one slot each). 1 is today.
	PushShards int
	// Affinity: the load balancer sends a user's streams to the gateway
	// that owns the user's push shard (hash of the user id), so a gateway
	// reads only its own user shards (rooms and broadcasts: every gateway
	// reads them).
	Affinity bool
	// Indexed: the hub looks up the streams an entry is for (user → streams,
	// room → streams) instead of offering it to every stream.
	Indexed bool
	// StreamKiB overrides the measured memory per stream (0: measured).
	StreamKiB float64
	// TypePartitions splits each hot type into that many streams
	// (photo.uploaded.p00 … p15, consumed with the pattern
	// photo.uploaded.*; order is kept per partition, for example per
	// subject). 0 or 1: one stream per type, as today.
	TypePartitions int
}

// Plan is what a design needs for a scenario.
type Plan struct {
	Design                 string
	Gateways               int
	StreamsPerGateway      int
	GatewayCoresPerGateway float64 // CPU one gateway uses at peak
	GatewayGiBPerGateway   float64 // stream memory of one gateway
	PushEntriesPerSec      float64 // written to push streams
	Deliveries             float64 // per second, to browsers
	PushReadsPerSec        float64 // entry reads by all gateways
	RedisShards            int
	RedisCores             float64 // command CPU, all shards
	BusiestPushShardCore   float64 // one push shard's command CPU
	BusiestPushShardMBps   float64 // one push shard's egress
	HotTypeCore            float64 // the busiest type stream's command CPU
	RedisGiB               float64 // data, all shards, without replicas
	MonthlyUSD             float64
	Limit                  string // what decided the gateway count
	BreaksFirst            string // the first limit crossed, if any
}

const hoursPerMonth = 730

// PlanFor sizes a deployment: as few gateways as satisfy memory and CPU
// (found by search, since a gateway's filter cost grows with the streams it
// holds), and as many Redis shards as the command CPU, memory and the push
// shards' egress need.
func PlanFor(in Inputs, sc Scenario, m Machine, d Design) Plan {
	p := Plan{Design: d.Name}
	push := sc.EventsPerSec * (sc.UserFraction + sc.RoomFraction)
	p.PushEntriesPerSec = push + sc.BroadcastPerSec
	userDeliv := sc.EventsPerSec * sc.UserFraction * sc.TabsPerUser
	roomDeliv := sc.EventsPerSec * sc.RoomFraction * sc.RoomMembers
	bcastDeliv := sc.BroadcastPerSec * float64(sc.Browsers)
	p.Deliveries = userDeliv + roomDeliv + bcastDeliv

	kib := in.Gateway.StreamKiB
	if d.StreamKiB > 0 {
		kib = d.StreamKiB
	}
	userEntries := sc.EventsPerSec * sc.UserFraction
	sharedEntries := sc.EventsPerSec*sc.RoomFraction + sc.BroadcastPerSec
	// entriesRead is what one gateway of g reads per second.
	entriesRead := func(g int) float64 {
		if d.Affinity && d.PushShards > 1 {
			// It reads the user shards it owns: at least one.
			owned := math.Max(1, float64(d.PushShards)/float64(g))
			return userEntries*owned/float64(d.PushShards) + sharedEntries
		}
		return userEntries + sharedEntries
	}
	cpu := func(g int) float64 {
		streams := float64(sc.Browsers) / float64(g)
		read := entriesRead(g)
		c := read*in.Gateway.DecodeUs*1e-6 + p.Deliveries/float64(g)*in.Gateway.DeliveryUs*1e-6
		if !d.Indexed {
			c += streams * read * in.Gateway.FilterNs * 1e-9
		}
		return c
	}
	memGiB := func(g int) float64 { return float64(sc.Browsers) / float64(g) * kib / (1 << 20) }
	g, limit := 1, ""
	for ; g < 1_000_000; g++ {
		okMem := memGiB(g) <= m.GatewayGiB*m.GatewayUtil
		okCPU := cpu(g) <= m.GatewayCores*m.GatewayUtil
		okConns := m.GatewayStreams == 0 || sc.Browsers <= g*m.GatewayStreams
		if okMem && okCPU && okConns {
			break
		}
		switch {
		case !okCPU:
			limit = "CPU"
		case !okMem:
			limit = "memory"
		default:
			limit = "streams cap"
		}
	}
	if limit == "" {
		limit = "one is enough"
	}
	p.Gateways, p.Limit = g, limit
	p.StreamsPerGateway = sc.Browsers / g
	p.GatewayCoresPerGateway = cpu(g)
	p.GatewayGiBPerGateway = memGiB(g)
	p.PushReadsPerSec = entriesRead(g) * float64(g)

	// Redis: bus traffic spreads over type streams (many keys, many
	// slots); push traffic over the push shards.
	busCores := sc.EventsPerSec * (in.Redis.PublishUs + sc.Groups*in.Redis.ConsumeUs) * 1e-6
	pushReadCores := p.PushReadsPerSec * in.Redis.PushReadUs * 1e-6
	p.RedisCores = busCores + pushReadCores
	shards := float64(max(1, d.PushShards))
	// The busiest push shard: its share of user entries, and every room
	// and broadcast entry when there is one room/broadcast stream per
	// shard... rooms and broadcasts are spread over the shards too (hash of
	// the room; broadcasts round-robin), each read by every gateway.
	userReadsPerShard := userEntries / shards
	if !d.Affinity {
		userReadsPerShard *= float64(g)
	}
	sharedReadsPerShard := sharedEntries / shards * float64(g)
	p.BusiestPushShardCore = (userReadsPerShard + sharedReadsPerShard) * in.Redis.PushReadUs * 1e-6
	p.BusiestPushShardMBps = (userReadsPerShard + sharedReadsPerShard) * in.Redis.PushEntryBytes / 1e6
	p.RedisGiB = ((sc.EventsPerSec*in.Redis.EntryBytes+p.PushEntriesPerSec*in.Redis.PushEntryBytes)*sc.RetentionSec +
		(sc.EventsPerSec+p.PushEntriesPerSec)*in.Redis.DedupKeyBytes*sc.DedupSec) / (1 << 30)
	n := math.Max(math.Ceil(p.RedisCores/m.RedisUtil), math.Ceil(p.RedisGiB/m.RedisGiB))
	p.RedisShards = int(n)

	p.HotTypeCore = sc.EventsPerSec * sc.HotTypeFraction / float64(max(1, d.TypePartitions)) * (in.Redis.PublishUs + sc.Groups*in.Redis.ConsumeUs) * 1e-6
	var crossed []string
	if p.HotTypeCore > m.RedisUtil {
		crossed = append(crossed, fmt.Sprintf("the busiest type stream needs %.2f cores on its one slot", p.HotTypeCore))
	}
	if p.BusiestPushShardCore > m.RedisUtil {
		crossed = append(crossed, fmt.Sprintf("one push shard needs %.2f cores", p.BusiestPushShardCore))
	}
	if p.BusiestPushShardMBps > m.RedisNICMBps {
		crossed = append(crossed, fmt.Sprintf("one push shard sends %.0f MB/s (budget %.0f)", p.BusiestPushShardMBps, m.RedisNICMBps))
	}
	p.BreaksFirst = strings.Join(crossed, "; ")
	gwCost := float64(g) * (m.GatewayCores*m.CoreHour + m.GatewayGiB*m.GiBHour)
	// A Redis shard: one core for commands, one for I/O threads and the
	// rest, its dataset with 50 % headroom for fork/copy-on-write.
	shardCost := 2*m.CoreHour + m.RedisGiB*1.5*m.GiBHour
	p.MonthlyUSD = (gwCost + float64(p.RedisShards*(1+m.RedisReplicas))*shardCost) * hoursPerMonth
	return p
}
