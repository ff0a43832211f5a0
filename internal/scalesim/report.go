package scalesim

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// LoadInputs reads the measured figures (testdata/inputs.json).
func LoadInputs(path string) (Inputs, error) {
	var in Inputs
	b, err := os.ReadFile(path)
	if err != nil {
		return in, err
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return in, fmt.Errorf("%s: %w", path, err)
	}
	return in, nil
}

// Internet is the scenario docs/scale.md sizes: 1 M browsers, 100 k
// events/s.
func Internet() Scenario {
	return Scenario{
		Browsers:        1_000_000,
		TabsPerUser:     1.5,
		EventsPerSec:    100_000,
		Groups:          3,
		UserFraction:    0.20,
		RoomFraction:    0.02,
		RoomMembers:     50,
		BroadcastPerSec: 0.1,
		RetentionSec:    3600,
		DedupSec:        120,
		HotTypeFraction: 0.25,
	}
}

// Cloud is the machine and price list docs/scale.md uses.
func Cloud() Machine {
	return Machine{
		GatewayCores: 4, GatewayGiB: 8, GatewayUtil: 0.6, GatewayStreams: 50_000,
		RedisUtil: 0.6, RedisGiB: 25, RedisNICMBps: 600,
		CoreHour: 0.035, GiBHour: 0.0045, RedisReplicas: 1,
	}
}

// Designs are the ways of carrying push traffic docs/scale.md compares,
// from today's to the one it proposes.
func Designs() []Design {
	return []Design{
		{Name: "A. until 2026-12-04: 1 push stream, every entry offered to every stream", PushShards: 1},
		{Name: "B. today: A + hub index (user/room → streams)", PushShards: 1, Indexed: true},
		{Name: "C. B + 64 push shards, any gateway", PushShards: 64, Indexed: true},
		{Name: "D. C + user affinity at the load balancer", PushShards: 64, Indexed: true, Affinity: true},
		{Name: "E. D + hot types in 4 partitions", PushShards: 64, Indexed: true, Affinity: true, TypePartitions: 4},
		{Name: "F. E + 16 KiB per idle stream", PushShards: 64, Indexed: true, Affinity: true, TypePartitions: 4, StreamKiB: 16},
	}
}

// DefaultActivity is the simulation's activity model.
func DefaultActivity() Activity {
	return Activity{UserS: 1.1, UserV: 1000, RoomS: 1.1, RoomV: 100, Rooms: 20_000, Seconds: 10, Seed: 1}
}

// SimScale scales the simulated rates down (docs/scale.md says by how
// much) so that the simulation runs in about a second.
const SimScale = 0.25

// Report renders the tables of docs/scale.md.
func Report(in Inputs, sc Scenario, m Machine, designs []Design, act Activity) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Inputs (%s):\n\n", in.Source)
	fmt.Fprintf(&b, "| figure | value |\n|---|---:|\n")
	fmt.Fprintf(&b, "| Redis CPU per bus publish (user-addressed, dedup, push copy) | %.1f µs |\n", in.Redis.PublishUs)
	fmt.Fprintf(&b, "| … the same without deduplication (`DedupWindow: -1`) | %.1f µs |\n", in.Redis.PublishNoDedupUs)
	fmt.Fprintf(&b, "| … with deduplication, not addressed (no push copy) | %.1f µs |\n", in.Redis.PublishUnaddressedUs)
	fmt.Fprintf(&b, "| Redis CPU per event read + acked by one group | %.1f µs |\n", in.Redis.ConsumeUs)
	fmt.Fprintf(&b, "| Redis CPU per push entry read by one gateway | %.2f µs |\n", in.Redis.PushReadUs)
	fmt.Fprintf(&b, "| Redis memory per entry: type stream / push stream | %.0f / %.0f B |\n", in.Redis.EntryBytes, in.Redis.PushEntryBytes)
	fmt.Fprintf(&b, "| Redis memory per deduplication key (per event and stream, for the window) | %.0f B |\n", in.Redis.DedupKeyBytes)
	fmt.Fprintf(&b, "| for comparison: Redis CPU per plain pipelined XADD of the same entry | %.1f µs |\n", in.Redis.RawXAddUs)
	fmt.Fprintf(&b, "| gateway CPU per delivery | %.2f µs |\n", in.Gateway.DeliveryUs)
	fmt.Fprintf(&b, "| gateway CPU per push entry decoded and rendered | %.1f µs |\n", in.Gateway.DecodeUs)
	fmt.Fprintf(&b, "| gateway CPU per stream offered an entry not for it | %.1f ns |\n", in.Gateway.FilterNs)
	fmt.Fprintf(&b, "| gateway RSS per idle stream | %.1f KiB |\n\n", in.Gateway.StreamKiB)

	plans := make([]Plan, len(designs))
	for i, d := range designs {
		plans[i] = PlanFor(in, sc, m, d)
	}
	p0 := plans[0]
	fmt.Fprintf(&b, "Load: %d browsers, %.0f events/s (%.0f to users, %.0f to rooms, %.1f broadcasts/s): %.0f push entries/s, %.0f deliveries/s.\n\n",
		sc.Browsers, sc.EventsPerSec, sc.EventsPerSec*sc.UserFraction, sc.EventsPerSec*sc.RoomFraction, sc.BroadcastPerSec, p0.PushEntriesPerSec, p0.Deliveries)
	fmt.Fprintf(&b, "| design | gateways (limit) | streams each | cores, GiB each | push reads/s | Redis shards | Redis cores, GiB | busiest push shard: cores, MB/s | hottest type: cores | USD/month | breaks |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, p := range plans {
		breaks := p.BreaksFirst
		if breaks == "" {
			breaks = "—"
		}
		fmt.Fprintf(&b, "| %s | %d (%s) | %d | %.2f, %.1f | %.0f | %d | %.2f, %.0f | %.2f, %.0f | %.2f | %.0f | %s |\n",
			p.Design, p.Gateways, p.Limit, p.StreamsPerGateway, p.GatewayCoresPerGateway, p.GatewayGiBPerGateway, p.PushReadsPerSec,
			p.RedisShards, p.RedisCores, p.RedisGiB, p.BusiestPushShardCore, p.BusiestPushShardMBps, p.HotTypeCore, p.MonthlyUSD, breaks)
	}
	fmt.Fprintf(&b, "\nSimulated skew (%d s at %.0f %% of the rates, Zipf users s=%.1f v=%.0f, %d rooms s=%.1f v=%.0f, seed %d):\n\n",
		act.Seconds, SimScale*100, act.UserS, act.UserV, act.Rooms, act.RoomS, act.RoomV, act.Seed)
	fmt.Fprintf(&b, "| design | gateways | busiest push shard ÷ mean | busiest gateway ÷ mean | most active user's share |\n|---|---:|---:|---:|---:|\n")
	for i, d := range designs {
		if i > 0 && d.PushShards == designs[i-1].PushShards && d.Affinity == designs[i-1].Affinity && plans[i].Gateways == plans[i-1].Gateways {
			continue // the same layout as the row before
		}
		sk := Simulate(sc, d, plans[i].Gateways, act, SimScale)
		fmt.Fprintf(&b, "| %s | %d | %.2f | %.2f | %.2f %% |\n", d.Name, plans[i].Gateways, sk.ShardPeak, sk.GatewayPeak, sk.HotUserShare*100)
	}
	return b.String()
}
