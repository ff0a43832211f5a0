package photo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/shared-infra/eventbus/photo"
)

func newStore(t *testing.T) (*photo.DiskStore, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	s, err := photo.NewDiskStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func put(t *testing.T, s photo.Store, key, content string) {
	t.Helper()
	if err := s.Put(t.Context(), key, strings.NewReader(content)); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func get(t *testing.T, s photo.Store, key string) string {
	t.Helper()
	rc, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDiskStoreRoundTrip(t *testing.T) {
	s, dir := newStore(t)
	put(t, s, "originals/p1.jpg", "first")
	if got := get(t, s, "originals/p1.jpg"); got != "first" {
		t.Fatalf("Get = %q, want %q", got, "first")
	}
	put(t, s, "originals/p1.jpg", "second")
	if got := get(t, s, "originals/p1.jpg"); got != "second" {
		t.Fatalf("after overwrite Get = %q, want %q", got, "second")
	}
	// The key is the file's path under the root.
	b, err := os.ReadFile(filepath.Join(dir, "originals", "p1.jpg"))
	if err != nil || string(b) != "second" {
		t.Fatalf("file on disk = %q, %v", b, err)
	}
}

func TestDiskStoreNotFound(t *testing.T) {
	s, _ := newStore(t)
	put(t, s, "dir/file", "x")
	for _, key := range []string{"missing", "dir/missing", "missing/file", "dir"} {
		_, err := s.Get(t.Context(), key)
		if !errors.Is(err, photo.ErrNotFound) {
			t.Errorf("Get(%q) error = %v, want ErrNotFound", key, err)
		}
		if got := photo.FailureCode(err); got != photo.CodeNotFound {
			t.Errorf("FailureCode(Get(%q)) = %q, want %q", key, got, photo.CodeNotFound)
		}
	}
}

func TestDiskStoreInvalidKeys(t *testing.T) {
	s, dir := newStore(t)
	keys := []string{
		"",
		"/etc/passwd",
		"../outside",
		"a/../../outside",
		"a/../b",
		"./a",
		"a/./b",
		"a//b",
		"a/",
		"..",
		".",
		`a\b`,
		"a\x00b",
		".tmp/put-x",
	}
	ctx := t.Context()
	for _, key := range keys {
		t.Run(fmt.Sprintf("%q", key), func(t *testing.T) {
			_, err := s.Get(ctx, key)
			checkInvalid(t, "Get", err)
			checkInvalid(t, "Put", s.Put(ctx, key, strings.NewReader("x")))
			checkInvalid(t, "Delete", s.Delete(ctx, key))
		})
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "outside")); !os.IsNotExist(err) {
		t.Errorf("a file was written outside the root: %v", err)
	}
	for _, prefix := range []string{"/", "../", "a/../", "..", "a//"} {
		_, err := s.List(ctx, prefix)
		checkInvalid(t, fmt.Sprintf("List(%q)", prefix), err)
	}
}

func checkInvalid(t *testing.T, op string, err error) {
	t.Helper()
	if !errors.Is(err, photo.ErrInvalidKey) {
		t.Errorf("%s error = %v, want ErrInvalidKey", op, err)
	}
}

func TestDiskStoreSymlinkCannotEscape(t *testing.T) {
	s, dir := newStore(t)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatalf("cannot create a symlink for the escape test: %v", err)
	}
	if rc, err := s.Get(t.Context(), "link/secret"); err == nil {
		rc.Close()
		t.Fatal("Get through a symlink leaving the root succeeded")
	}
	if err := s.Put(t.Context(), "link/planted", strings.NewReader("x")); err == nil {
		t.Fatal("Put through a symlink leaving the root succeeded")
	}
	if _, err := os.Stat(filepath.Join(outside, "planted")); !os.IsNotExist(err) {
		t.Fatalf("file planted outside the root: %v", err)
	}
}

func TestDiskStoreList(t *testing.T) {
	s, _ := newStore(t)
	for _, k := range []string{"photos/1/orig", "photos/1/thumb/small", "photos/10/orig", "photos/2/orig", "photos/1.txt", "other"} {
		put(t, s, k, k)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"other", "photos/1.txt", "photos/1/orig", "photos/1/thumb/small", "photos/10/orig", "photos/2/orig"}},
		{"photos/1/", []string{"photos/1/orig", "photos/1/thumb/small"}},
		{"photos/1", []string{"photos/1.txt", "photos/1/orig", "photos/1/thumb/small", "photos/10/orig"}},
		{"photos/1/thumb/sm", []string{"photos/1/thumb/small"}},
		{"oth", []string{"other"}},
		{"photos/3/", nil},
		{"nope/deeper/", nil},
		{"other/", nil}, // "other" is a file, not a directory
	}
	for _, tt := range tests {
		got, err := s.List(t.Context(), tt.prefix)
		if err != nil {
			t.Errorf("List(%q): %v", tt.prefix, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("List(%q) = %q, want %q", tt.prefix, got, tt.want)
		}
	}
}

func TestDiskStoreDeleteIsIdempotent(t *testing.T) {
	s, _ := newStore(t)
	put(t, s, "a/b", "x")
	for i := range 2 {
		if err := s.Delete(t.Context(), "a/b"); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if err := s.Delete(t.Context(), "never/existed"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	if _, err := s.Get(t.Context(), "a/b"); !errors.Is(err, photo.ErrNotFound) {
		t.Fatalf("Get after Delete error = %v, want ErrNotFound", err)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset")
	}
	n := min(len(p), r.n)
	r.n -= n
	return n, nil
}

func TestDiskStorePutIsAtomic(t *testing.T) {
	s, dir := newStore(t)
	put(t, s, "k", "original")
	err := s.Put(t.Context(), "k", &failingReader{n: 10})
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("Put with a failing reader error = %v", err)
	}
	if got := get(t, s, "k"); got != "original" {
		t.Fatalf("failed Put changed the object to %q", got)
	}
	keys, err := s.List(t.Context(), "")
	if err != nil || !slices.Equal(keys, []string{"k"}) {
		t.Fatalf("List = %q, %v; want only k", keys, err)
	}
	tmp, _ := os.ReadDir(filepath.Join(dir, ".tmp"))
	if len(tmp) != 0 {
		t.Fatalf("temporary files left behind: %v", tmp)
	}
}

func TestDiskStoreConcurrentPuts(t *testing.T) {
	s, _ := newStore(t)
	const writers = 8
	versions := make([][]byte, writers)
	for i := range versions {
		versions[i] = bytes.Repeat([]byte{byte('a' + i)}, 64<<10)
	}
	put(t, s, "k", string(versions[0]))
	ctx := t.Context()
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			if err := s.Put(ctx, "k", bytes.NewReader(versions[i])); err != nil {
				t.Errorf("Put: %v", err)
			}
		})
		wg.Go(func() {
			rc, err := s.Get(ctx, "k")
			if err != nil {
				t.Errorf("Get: %v", err)
				return
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			if err != nil {
				t.Errorf("read: %v", err)
				return
			}
			if !slices.ContainsFunc(versions, func(v []byte) bool { return bytes.Equal(v, b) }) {
				t.Errorf("Get saw a partial or mixed object of %d bytes", len(b))
			}
		})
	}
	wg.Wait()
}

func TestDiskStoreCanceledContext(t *testing.T) {
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Put(ctx, "k", strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put error = %v, want context.Canceled", err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get error = %v, want context.Canceled", err)
	}
	if _, err := s.List(ctx, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("List error = %v, want context.Canceled", err)
	}
}

func TestNewDiskStore(t *testing.T) {
	if _, err := photo.NewDiskStore(""); err == nil {
		t.Error("NewDiskStore(\"\") succeeded")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := photo.NewDiskStore(file); err == nil {
		t.Error("NewDiskStore on a regular file succeeded")
	}
}
