package main_test

import "testing"

// `publish --id` twice (two runs of the command, as two processes would be)
// stores and delivers one entry: the second is dropped by the publisher's
// deduplication and still succeeds. Before, it stored two.
func TestPublishSameIDTwiceStoresOne(t *testing.T) {
	t.Parallel()
	c, prefix, global := setup(t)
	for range 2 {
		r := cli(t, "", with(global, "publish", "photo.uploaded", `{"photoId":"p-1"}`, "--user", "u-1", "--id", "dup1")...).ok(t)
		if r.stdout != "dup1\n" {
			t.Fatalf("stdout %q, want the event id", r.stdout)
		}
	}
	if n := c.XLen(t.Context(), prefix+"photo.uploaded").Val(); n != 1 {
		t.Errorf("stream has %d entries, want 1", n)
	}
	if n := c.XLen(t.Context(), prefix+"$push").Val(); n != 1 {
		t.Errorf("push stream has %d entries, want 1", n)
	}
}
