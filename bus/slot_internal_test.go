package bus

import "testing"

func TestKeySlot(t *testing.T) {
	// Reference values from the Redis Cluster specification.
	cases := map[string]int{
		"foo":        12182,
		"bar":        5061,
		"123456789":  0x31C3, // the CRC16/XMODEM check value
		"foo{}{bar}": 8363,   // an empty tag hashes the whole key
	}
	for k, want := range cases {
		if got := keySlot(k); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", k, got, want)
		}
	}
	if keySlot("{user1000}.following") != keySlot("{user1000}.followers") || keySlot("{user1000}.following") != keySlot("user1000") {
		t.Error("keys with the same hash tag must share a slot")
	}
}

// The dedup key of an event shares the slot of its stream (and of the push
// stream for a push copy), so that one script can check it and write.
func TestDedupKeySlot(t *testing.T) {
	c := Config{StreamPrefix: DefaultStreamPrefix}
	for _, stream := range []string{c.StreamKey("photo.uploaded"), c.StreamKey("a"), c.PushKey()} {
		for _, id := range []string{"x", "{odd}id", "0f8fad5b-d9cb-469f-a165-70867728950e"} {
			if got, want := keySlot(c.DedupKey(stream, id)), keySlot(stream); got != want {
				t.Errorf("slot of %s = %d, stream %s has %d", c.DedupKey(stream, id), got, stream, want)
			}
		}
	}
}
