package main_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestPublishOneEvent(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	const id = "8f14e45f-ceea-467f-a0e6-3b1f0c9a1e2d"
	r := cli(t, "", with(global, "--service", "uploader",
		"publish", "photo.uploaded", `{"photoId":"p-42","size":1024}`,
		"--subject", "p-42", "--room", "album-1", "--user", "u-7", "--broadcast", "--id", id)...).ok(t)
	if r.stdout != id+"\n" {
		t.Fatalf("stdout %q, want the event id and a newline", r.stdout)
	}

	entries, err := c.XRange(t.Context(), prefix+"photo.uploaded", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("%d entries, want 1", len(entries))
	}
	got := entries[0].Values
	want := map[string]string{
		"id": id, "type": "photo.uploaded", "source": "uploader", "specversion": "1.0",
		"datacontenttype": "application/json", "subject": "p-42", "room": "album-1",
		"user": "u-7", "broadcast": "true", "data": `{"photoId":"p-42","size":1024}`,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("field %s = %q, want %q", k, got[k], v)
		}
	}
	if ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(got["time"])); err != nil || time.Since(ts) > time.Minute {
		t.Errorf("time %q is not a recent RFC 3339 time (%v)", got["time"], err)
	}
	// Addressed to browsers: a copy on the push stream; the type registered.
	if n := c.XLen(t.Context(), prefix+"$push").Val(); n != 1 {
		t.Errorf("push stream has %d entries, want 1", n)
	}
	if !c.SIsMember(t.Context(), prefix+"$types", "photo.uploaded").Val() {
		t.Error("photo.uploaded is not in the type registry")
	}
}

func TestPublishNoDataNonJSONContentType(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	cli(t, "", with(global, "publish", "log.line", "disk full", "--content-type", "text/plain")...).ok(t)
	e := c.XRange(t.Context(), prefix+"log.line", "-", "+").Val()
	if len(e) != 1 || e[0].Values["data"] != "disk full" || e[0].Values["datacontenttype"] != "text/plain" {
		t.Fatalf("entries %v, want one text/plain event with data \"disk full\"", e)
	}
}

func TestPublishFromStdin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"dash", []string{"publish", "test.counter", "-", "--subject", "s"}},
		{"implicit", []string{"publish", "test.counter", "--subject", "s"}}, // stdin is a pipe
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, prefix, global := setup(t)
			const n = 250 // three batches of up to 100
			var in strings.Builder
			for i := range n {
				fmt.Fprintf(&in, "{\"n\":%d}\r\n", i)
				if i == 10 {
					in.WriteString("\n   \n") // blank lines are skipped
				}
			}
			r := cli(t, in.String(), with(global, tc.args...)...).ok(t)
			ids := lines(r.stdout)
			if len(ids) != n {
				t.Fatalf("%d ids printed, want %d", len(ids), n)
			}
			entries := c.XRange(t.Context(), prefix+"test.counter", "-", "+").Val()
			if len(entries) != n {
				t.Fatalf("%d entries in the stream, want %d", len(entries), n)
			}
			seen := map[string]bool{}
			for i, e := range entries {
				if _, err := uuid.Parse(ids[i]); err != nil || seen[ids[i]] {
					t.Fatalf("id %d %q is not a fresh UUID", i, ids[i])
				}
				seen[ids[i]] = true
				if e.Values["id"] != ids[i] || e.Values["data"] != fmt.Sprintf(`{"n":%d}`, i) || e.Values["subject"] != "s" {
					t.Fatalf("entry %d = %v, want id %s, data {\"n\":%d}, subject s (in input order)", i, e.Values, ids[i], i)
				}
			}
		})
	}
}

func TestPublishStdinStopsAtInvalidLine(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	r := cli(t, "{\"n\":1}\n{\"n\":2}\n{oops\n{\"n\":4}\n", with(global, "publish", "test.counter", "-")...)
	r.failsWith(t, 2, "line 3", "not valid JSON", "2 event(s) before it were published")
	if ids := lines(r.stdout); len(ids) != 2 {
		t.Errorf("stdout %q: want the 2 ids of the lines before the bad one", r.stdout)
	}
	if n := c.XLen(t.Context(), prefix+"test.counter").Val(); n != 2 {
		t.Errorf("stream has %d entries, want 2", n)
	}
}

func TestPublishEmptyStdin(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	r := cli(t, "", with(global, "publish", "test.counter", "-")...).ok(t)
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing", r.stdout)
	}
	if n := c.Exists(t.Context(), prefix+"test.counter").Val(); n != 0 {
		t.Error("a stream was created with no input")
	}
}
