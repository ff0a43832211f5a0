package scalesim

import (
	"hash/fnv"
	"math/rand"
	"strconv"
)

// Skew is what Simulate found: how far the busiest push shard and the
// busiest gateway are above the mean, at the worst simulated second.
type Skew struct {
	Design string
	// ShardPeak: entries the busiest push shard had to serve (write +
	// reads), divided by the mean over shards.
	ShardPeak float64
	// GatewayPeak: deliveries of the busiest gateway divided by the mean.
	GatewayPeak float64
	// HotUserShare: of the user-addressed events, the share of the most
	// active user (a property of the activity distribution).
	HotUserShare float64
}

// Activity describes who the events are for: user activity and room
// popularity follow Zipf laws (P(k) ∝ (V+k)^-S, math/rand's Zipf), so that
// a few users and rooms are much busier than the rest.
type Activity struct {
	UserS, UserV float64
	RoomS, RoomV float64
	Rooms        int
	Seconds      int   // simulated seconds (windows)
	Seed         int64 // fixed: the doc's tables are reproducible
}

// Simulate plays sc's traffic second by second over a deployment of
// gateways and push shards laid out as d says: users are hashed to push
// shards (FNV-1a of the user id), a user's streams go to the shard's
// gateway under Affinity and to a random gateway otherwise, rooms are
// hashed to shards and have members on every gateway in proportion. The
// rates are scaled down by scale (1 = the scenario's own) to keep the run
// short; the ratios it returns do not depend on it much once each second
// holds thousands of events.
func Simulate(sc Scenario, d Design, gateways int, act Activity, scale float64) Skew {
	r := rand.New(rand.NewSource(act.Seed))
	users := int(float64(sc.Browsers) / sc.TabsPerUser)
	shards := max(1, d.PushShards)
	shardOf := make([]int32, users)
	tabs := make([]uint8, users)
	gwOf := make([][]int32, users) // gateway of each of the user's streams
	frac := sc.TabsPerUser - float64(int(sc.TabsPerUser))
	for u := range users {
		h := fnv.New32a()
		h.Write([]byte("u" + strconv.Itoa(u)))
		shardOf[u] = int32(h.Sum32() % uint32(shards))
		n := int(sc.TabsPerUser)
		if r.Float64() < frac {
			n++
		}
		tabs[u] = uint8(n)
		gw := make([]int32, n)
		for i := range gw {
			if d.Affinity && shards > 1 {
				gw[i] = shardOf[u] % int32(gateways)
			} else {
				gw[i] = int32(r.Intn(gateways))
			}
		}
		gwOf[u] = gw
	}
	roomShard := make([]int32, act.Rooms)
	for i := range roomShard {
		h := fnv.New32a()
		h.Write([]byte("r" + strconv.Itoa(i)))
		roomShard[i] = int32(h.Sum32() % uint32(shards))
	}
	// Users are ranked by activity in a random order, so that the busiest
	// users are not the low ids (whose shard would then be fixed).
	rank := r.Perm(users)
	userZipf := rand.NewZipf(r, act.UserS, act.UserV, uint64(users-1))
	roomZipf := rand.NewZipf(r, act.RoomS, act.RoomV, uint64(act.Rooms-1))

	nUser := int(sc.EventsPerSec * sc.UserFraction * scale)
	nRoom := int(sc.EventsPerSec * sc.RoomFraction * scale)
	shardLoad := make([]float64, shards)
	gwDeliv := make([]float64, gateways)
	var sk Skew
	sk.Design = d.Name
	hot := make(map[int]int)
	var userEvents int
	for range act.Seconds {
		clear(shardLoad)
		clear(gwDeliv)
		for range nUser {
			u := rank[userZipf.Uint64()]
			hot[u]++
			userEvents++
			s := shardOf[u]
			readers := 1.0 // its owner gateway
			if !(d.Affinity && shards > 1) {
				readers = float64(gateways)
			}
			shardLoad[s] += 1 + readers
			for _, g := range gwOf[u] {
				gwDeliv[g]++
			}
		}
		for range nRoom {
			room := int(roomZipf.Uint64())
			shardLoad[roomShard[room]] += 1 + float64(gateways)
			per := sc.RoomMembers / float64(gateways)
			for g := range gwDeliv {
				gwDeliv[g] += per
			}
		}
		sk.ShardPeak = max(sk.ShardPeak, peak(shardLoad))
		sk.GatewayPeak = max(sk.GatewayPeak, peak(gwDeliv))
	}
	top := 0
	for _, n := range hot {
		top = max(top, n)
	}
	if userEvents > 0 {
		sk.HotUserShare = float64(top) / float64(userEvents)
	}
	return sk
}

// peak is the largest value over the mean (0 when everything is 0).
func peak(xs []float64) float64 {
	var sum, top float64
	for _, x := range xs {
		sum += x
		top = max(top, x)
	}
	if sum == 0 {
		return 0
	}
	return top / (sum / float64(len(xs)))
}
