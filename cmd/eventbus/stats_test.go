package main_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestStatsShowsGroupsLagPending(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	for range 3 {
		publish(t, global, "photo.uploaded", `{"photoId":"p-1"}`)
	}
	publish(t, global, "photo.deleted", `{"photoId":"p-1"}`)
	// A handler's consumer group that took one event and has not acked it.
	key := prefix + "photo.uploaded"
	ctx := t.Context()
	if err := c.XGroupCreate(ctx, key, "svc.thumbnail", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.XGroupCreate(ctx, key, "svc.indexer", "$").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "svc.thumbnail", Consumer: "c1", Streams: []string{key, ">"}, Count: 1}).Err(); err != nil {
		t.Fatal(err)
	}

	r := cli(t, "", with(global, "stats", "--json")...).ok(t)
	var rep struct {
		Streams []struct {
			Type   string `json:"type"`
			Length int64  `json:"length"`
			Groups []struct {
				Group     string `json:"group"`
				Consumers int64  `json:"consumers"`
				Pending   int64  `json:"pending"`
				Lag       *int64 `json:"lag"`
			} `json:"groups"`
		} `json:"streams"`
		DeadLetters int64 `json:"deadLetters"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("stats --json is not JSON (%v):\n%s", err, r.stdout)
	}
	if len(rep.Streams) != 2 || rep.Streams[0].Type != "photo.deleted" || rep.Streams[1].Type != "photo.uploaded" {
		t.Fatalf("streams %+v, want photo.deleted and photo.uploaded", rep.Streams)
	}
	up := rep.Streams[1]
	if up.Length != 3 || len(up.Groups) != 2 {
		t.Fatalf("photo.uploaded = %+v, want length 3 and 2 groups", up)
	}
	for _, g := range up.Groups {
		var wantPending, wantLag int64
		switch g.Group {
		case "svc.thumbnail":
			wantPending, wantLag = 1, 2
		case "svc.indexer":
			wantPending, wantLag = 0, 0
		default:
			t.Fatalf("unexpected group %q", g.Group)
		}
		if g.Pending != wantPending || g.Lag == nil || *g.Lag != wantLag {
			t.Errorf("group %s: pending %d lag %v, want pending %d lag %d", g.Group, g.Pending, g.Lag, wantPending, wantLag)
		}
	}

	// The table, with rates over a short interval.
	r = cli(t, "", with(global, "stats", "photo.*", "--interval", "200ms")...).ok(t)
	for _, want := range []string{"TYPE", "LAG", "LOST", "PENDING", "PUB/S", "DELIV/S", "svc.thumbnail", "svc.indexer", "photo.deleted", "dead letters: 0"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stats output lacks %q:\n%s", want, r.stdout)
		}
	}
	var thumb []string
	for _, l := range lines(r.stdout) {
		if strings.Contains(l, "svc.thumbnail") {
			thumb = strings.Fields(l)
		}
	}
	// TYPE LENGTH PUB/S GROUP CONSUMERS PENDING LAG LOST DELIV/S LAST
	if len(thumb) != 10 || thumb[7] != "0" || thumb[0] != "photo.uploaded" || thumb[1] != "3" || thumb[4] != "1" || thumb[5] != "1" || thumb[6] != "2" {
		t.Errorf("svc.thumbnail row %q, want photo.uploaded 3 _ svc.thumbnail 1 1 2 _ _", thumb)
	}
}

// A stream written by a plain XADD (not in the registry) is listed, and
// entries trimmed before a group read them show as LOST.
func TestStatsListsRawStreamsAndLosses(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	ctx := t.Context()
	key := prefix + "raw.hand"
	if err := c.XGroupCreateMkStream(ctx, key, "svc.h", "0").Err(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"id", "x", "type", "raw.hand"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// What a retention pass records for a group (bus.Bus.Trim).
	lossKey := "{" + key + "}:lost"
	t.Cleanup(func() { c.Del(context.Background(), lossKey) })
	if err := c.HSet(ctx, lossKey, "svc.h", 7).Err(); err != nil {
		t.Fatal(err)
	}
	r := cli(t, "", with(global, "stats", "--json")...).ok(t)
	var rep struct {
		Streams []struct {
			Type   string `json:"type"`
			Groups []struct {
				Group string `json:"group"`
				Lost  int64  `json:"lost"`
			} `json:"groups"`
		} `json:"streams"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("stats --json is not JSON (%v):\n%s", err, r.stdout)
	}
	if len(rep.Streams) != 1 || rep.Streams[0].Type != "raw.hand" || len(rep.Streams[0].Groups) != 1 || rep.Streams[0].Groups[0].Lost != 7 {
		t.Fatalf("stats = %+v, want raw.hand with svc.h lost 7", rep.Streams)
	}
}
