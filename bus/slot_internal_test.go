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
