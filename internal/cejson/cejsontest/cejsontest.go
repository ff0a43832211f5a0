// Package cejsontest holds the stream entries, and the CloudEvents JSON each
// must render as, that the gateway's and the CLI's tests share: both render
// an event through internal/cejson, and these fixtures hold them to the same
// bytes for the same entry.
package cejsontest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Entry is one stream entry and its expected rendering.
type Entry struct {
	Name     string            `json:"name"`
	StreamID string            `json:"streamid"`
	Fields   map[string]string `json:"fields"`
	JSON     string            `json:"json"` // without the CLI's "streamid" member
}

// XMessage is the entry as go-redis reads it.
func (e Entry) XMessage() redis.XMessage {
	v := make(map[string]any, len(e.Fields))
	for k, s := range e.Fields {
		v[k] = s
	}
	return redis.XMessage{ID: e.StreamID, Values: v}
}

// Entries reads ../testdata/entries.json.
func Entries(t testing.TB) []Entry {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "testdata", "entries.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []Entry
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
