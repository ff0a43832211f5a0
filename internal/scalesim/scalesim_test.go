package scalesim_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/internal/scalesim"
)

const (
	docPath    = "../../docs/scale.md"
	beginBlock = "<!-- scalesim:begin (go run ./internal/scalesim/cmd/scalesim) -->\n"
	endBlock   = "<!-- scalesim:end -->"
)

func inputs(t *testing.T) scalesim.Inputs {
	t.Helper()
	in, err := scalesim.LoadInputs("testdata/inputs.json")
	require.NoError(t, err)
	return in
}

// The tables in docs/scale.md are what the model prints for the recorded
// inputs: change the model or the inputs, and the doc must be regenerated
// (UPDATE_SCALE_DOC=1 go test ./internal/scalesim/ rewrites the block).
func TestDocTablesAreTheModelsOutput(t *testing.T) {
	doc, err := os.ReadFile(docPath)
	require.NoError(t, err)
	s := string(doc)
	i, j := strings.Index(s, beginBlock), strings.Index(s, endBlock)
	require.True(t, i >= 0 && j > i, "docs/scale.md has no scalesim block")
	want := scalesim.Report(inputs(t), scalesim.Internet(), scalesim.Cloud(), scalesim.Designs(), scalesim.DefaultActivity())
	got := s[i+len(beginBlock) : j]
	if os.Getenv("UPDATE_SCALE_DOC") != "" {
		require.NoError(t, os.WriteFile(docPath, []byte(s[:i+len(beginBlock)]+want+s[j:]), 0o644))
		return
	}
	assert.Equal(t, want, got, "docs/scale.md is stale: UPDATE_SCALE_DOC=1 go test ./internal/scalesim/")
}

// What the designs claim, checked on the model rather than read off the
// table: the index removes the filter cost, affinity cuts the push reads,
// sharding spreads the busiest push shard, partitions spread a hot type.
func TestDesignsDoWhatTheySay(t *testing.T) {
	in, sc, m := inputs(t), scalesim.Internet(), scalesim.Cloud()
	plans := map[string]scalesim.Plan{}
	for _, d := range scalesim.Designs() {
		plans[d.Name[:1]] = scalesim.PlanFor(in, sc, m, d)
	}
	a, b, c, d, e := plans["A"], plans["B"], plans["C"], plans["D"], plans["E"]
	assert.Equal(t, "CPU", a.Limit, "today the filter decides the gateway count")
	assert.Less(t, b.Gateways, a.Gateways)
	assert.Less(t, c.BusiestPushShardCore, b.BusiestPushShardCore/32, "64 shards share the reads")
	assert.Less(t, d.PushReadsPerSec, c.PushReadsPerSec/4, "affinity: a gateway reads its own user shards")
	assert.InDelta(t, d.HotTypeCore/4, e.HotTypeCore, 1e-9)
	assert.NotEmpty(t, a.BreaksFirst)
	assert.Empty(t, e.BreaksFirst)
	assert.InDelta(t, 230_000, a.Deliveries, 1, "20k×1.5 + 2k×50 + 0.1×1M")
}

// The simulation is deterministic for a seed, and a layout without
// sharding has nothing to skew on the push side.
func TestSimulateIsReproducible(t *testing.T) {
	sc, act := scalesim.Internet(), scalesim.DefaultActivity()
	act.Seconds = 2
	d := scalesim.Designs()[3]
	x := scalesim.Simulate(sc, d, 20, act, 0.05)
	y := scalesim.Simulate(sc, d, 20, act, 0.05)
	assert.Equal(t, x, y)
	assert.Greater(t, x.ShardPeak, 1.0)
	one := scalesim.Simulate(sc, scalesim.Designs()[1], 20, act, 0.05)
	assert.InDelta(t, 1.0, one.ShardPeak, 1e-9)
}

// Measure runs against real Redis and returns figures that are in the
// right relation to each other (a bus entry is bigger than its payload;
// every operation costs Redis something).
func TestMeasureOnRealRedis(t *testing.T) {
	c, ok := redistest.Client(t).(*redis.Client)
	if !ok {
		t.Fatal("Measure needs a single-node client; run without -tags cluster")
	}
	rc, err := scalesim.Measure(context.Background(), c, 2000)
	require.NoError(t, err)
	for name, v := range map[string]float64{
		"publish": rc.PublishUs, "publish without dedup": rc.PublishNoDedupUs, "publish unaddressed": rc.PublishUnaddressedUs,
		"raw XADD": rc.RawXAddUs, "consume": rc.ConsumeUs, "push read": rc.PushReadUs,
	} {
		assert.Greater(t, v, 0.0, name)
	}
	assert.Greater(t, rc.EntryBytes, 100.0)
	assert.Greater(t, rc.PushEntryBytes, 100.0)
	assert.Greater(t, rc.DedupKeyBytes, 0.0)
}

// MeasureScripts reads a time per command for each way of writing an
// entry, from real Redis.
func TestMeasureScriptsOnRealRedis(t *testing.T) {
	c, ok := redistest.Client(t).(*redis.Client)
	if !ok {
		t.Fatal("MeasureScripts needs a single-node client; run without -tags cluster")
	}
	src, err := os.ReadFile("../../bus/lua/dedup_xadd.lua")
	require.NoError(t, err)
	sc, err := scalesim.MeasureScripts(context.Background(), c, string(src), 500)
	require.NoError(t, err)
	for name, v := range map[string]float64{"plain": sc.PlainXAdd, "noop": sc.NoopScript, "xadd in script": sc.XAddInScript, "dedup": sc.DedupScript} {
		assert.Greater(t, v, 0.0, name)
	}
}
