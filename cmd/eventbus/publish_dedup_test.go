package main_test

import (
	"strings"
	"testing"
)

// `publish --id` twice (two runs of the command, as two processes would be)
// stores and delivers one entry: the second is dropped by the publisher's
// deduplication and still succeeds, and says on stderr that it was a
// duplicate. Before, it stored two.
func TestPublishSameIDTwiceStoresOne(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	for i := range 2 {
		r := cli(t, "", with(global, "publish", "photo.uploaded", `{"photoId":"p-1"}`, "--user", "u-1", "--id", "dup1")...).ok(t)
		if r.stdout != "dup1\n" {
			t.Fatalf("stdout %q, want the event id", r.stdout)
		}
		switch {
		case i == 0 && r.stderr != "":
			t.Errorf("first publish: stderr %q, want nothing", r.stderr)
		case i == 1 && (!strings.Contains(r.stderr, "event dup1 is a duplicate") || !strings.Contains(r.stderr, "not written again") || strings.Count(r.stderr, "\n") != 1):
			t.Errorf("second publish: stderr %q, want one line saying dup1 is a duplicate, not written again", r.stderr)
		}
	}
	if n := c.XLen(t.Context(), prefix+"photo.uploaded").Val(); n != 1 {
		t.Errorf("stream has %d entries, want 1", n)
	}
	if n := c.XLen(t.Context(), prefix+"$push").Val(); n != 1 {
		t.Errorf("push stream has %d entries, want 1", n)
	}
}
