package main

import (
	"encoding/json"
	"testing"
	"time"
)

func TestEventRoundTrip(t *testing.T) {
	before := time.Now()
	b := newEvent(12345)
	if len(b) != EventSize {
		t.Fatalf("event of %d bytes, want %d", len(b), EventSize)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	seq, sent, err := parseEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	if seq != 12345 || sent.Before(before) || sent.After(time.Now()) {
		t.Fatalf("parsed seq %d sent %v, want 12345 after %v", seq, sent, before)
	}
}
