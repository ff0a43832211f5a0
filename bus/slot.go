package bus

import "strings"

// keySlot returns the Redis Cluster hash slot of key (CRC16/XMODEM of the key,
// or of its {hash tag}, mod 16384). go-redis has the same function in an
// internal package we cannot import; the subscriber needs it to group the
// streams of one multi-stream XREADGROUP by slot, since a cluster rejects a
// command whose keys span slots.
func keySlot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}
