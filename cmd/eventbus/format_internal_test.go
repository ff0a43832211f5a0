package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/internal/cejson/cejsontest"
)

func TestParseFrom(t *testing.T) {
	for _, tc := range []struct {
		in      string
		id      string
		ago     time.Duration
		wantErr bool
	}{
		{in: ""}, {in: "now"}, {in: "$"},
		{in: "0", id: "0-0"},
		{in: "1700000000000-5", id: "1700000000000-5"},
		{in: "1700000000000", id: "1700000000000-0"},
		{in: "10m", ago: 10 * time.Minute},
		{in: "1h30m", ago: 90 * time.Minute},
		{in: "-5m", wantErr: true},
		{in: "yesterday", wantErr: true},
		{in: "1-2-3", wantErr: true},
		{in: "99999999999999999999-0", wantErr: true},
	} {
		id, ago, err := parseFrom(tc.in)
		if (err != nil) != tc.wantErr || id != tc.id || ago != tc.ago {
			t.Errorf("parseFrom(%q) = %q, %s, %v; want %q, %s, error %v", tc.in, id, ago, err, tc.id, tc.ago, tc.wantErr)
		}
		if err != nil && exitCode(err) != exitUsage {
			t.Errorf("parseFrom(%q) error is not a usage error", tc.in)
		}
	}
}

func TestStreamIDs(t *testing.T) {
	if got := justBefore(1000); got != "999-18446744073709551615" {
		t.Errorf("justBefore(1000) = %s", got)
	}
	if got := justBefore(0); got != "0-0" {
		t.Errorf("justBefore(0) = %s", got)
	}
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1-0", "1-0", 0}, {"1-1", "1-0", 1}, {"9-0", "10-0", -1}, {"10-2", "10-10", -1},
	} {
		if got := compareStreamIDs(tc.a, tc.b); got != tc.want {
			t.Errorf("compareStreamIDs(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestEntryJSON(t *testing.T) {
	// The same bytes as the gateway's SSE data (gateway TestPushEntryJSON),
	// plus the entry id.
	for _, c := range cejsontest.Entries(t) {
		got := string(decodeEntry("photo.uploaded", c.XMessage()).JSON())
		sid := `,"streamid":"` + c.StreamID + `"`
		if !strings.Contains(got, sid) || strings.Replace(got, sid, "", 1) != c.JSON {
			t.Errorf("%s: JSON\n got %s\nwant %s with %s", c.Name, got, c.JSON, sid)
		}
	}
	x := cejsontest.Entries(t)[0].XMessage()

	// A malformed entry is shown, never dropped.
	bad := decodeEntry("photo.uploaded", redis.XMessage{ID: "1-0", Values: map[string]any{"garbage": "1"}})
	var m map[string]any
	if err := json.Unmarshal(bad.JSON(), &m); err != nil {
		t.Fatalf("malformed JSON: %v: %s", err, bad.JSON())
	}
	if m["malformed"] == "" || m["type"] != "photo.uploaded" || m["streamid"] != "1-0" {
		t.Errorf("malformed entry as JSON: %v", m)
	}
	if p := bad.Pretty(time.Now(), 0); !strings.Contains(p, "MALFORMED") {
		t.Errorf("malformed entry as text: %s", p)
	}

	// A valid event in the wrong stream is malformed too.
	x.Values["datacontenttype"], x.Values["data"] = "application/json", "{}"
	if e := decodeEntry("photo.deleted", x); e.Malformed == "" {
		t.Error("an event of type photo.uploaded in the photo.deleted stream is not marked malformed")
	}
}

func TestPretty(t *testing.T) {
	x := redis.XMessage{ID: "1700000000000-0", Values: map[string]any{
		"id": "e1", "type": "photo.uploaded", "source": "svc", "specversion": "1.0",
		"time": time.Now().UTC().Format(time.RFC3339Nano), "subject": "p-1", "user": "u-7",
		"broadcast": "true", "data": `{ "a": 1 }`,
	}}
	got := decodeEntry("photo.uploaded", x).Pretty(time.Now(), 30)
	for _, want := range []string{"photo.uploaded" + strings.Repeat(" ", 16) + "  e1", "subject=p-1", "user=u-7", "broadcast", `{"a":1}`} {
		if !strings.Contains(got, want) {
			t.Errorf("pretty line %q lacks %q", got, want)
		}
	}
}

func TestExitCodes(t *testing.T) {
	if exitCode(usagef("x")) != exitUsage || exitCode(&failure{err: errAborted}) != exitFail {
		t.Error("usageError or failure mapped to the wrong exit code")
	}
	if got := exitCode(classify(errAborted)); got != exitFail {
		t.Errorf("a plain error from a subcommand exits %d, want %d", got, exitFail)
	}
}
