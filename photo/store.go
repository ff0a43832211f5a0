package photo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Store keeps blobs (originals and thumbnails) under slash-separated keys such
// as "originals/42.jpg". Implementations must be safe for concurrent use.
type Store interface {
	// Get opens the object under key. The caller closes it. A missing key
	// gives an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Put stores everything read from r under key, replacing any previous
	// object. Readers never observe a partly written object.
	Put(ctx context.Context, key string, r io.Reader) error
	// Delete removes the object under key. Deleting a missing key is not an
	// error.
	Delete(ctx context.Context, key string) error
	// List returns, sorted, the keys that start with prefix. The prefix is a
	// plain string prefix: "a/1" matches "a/1.jpg" and "a/10/x".
	List(ctx context.Context, prefix string) ([]string, error)
}

var _ Store = (*DiskStore)(nil)

// tmpDir is the directory under the store root that holds files being written
// by Put. Keys may not start with it. A process killed during Put can leave a
// file behind in it; such files are never listed and may be removed at will.
const tmpDir = ".tmp"

// DiskStore is a [Store] that keeps each object in a file under a root
// directory; the key is the file's path relative to the root. All access goes
// through [os.Root], so neither a malformed key nor a symbolic link can reach
// outside the root. A DiskStore is safe for concurrent use.
type DiskStore struct {
	dir string
}

// NewDiskStore returns a DiskStore rooted at dir, creating the directory if it
// does not exist.
func NewDiskStore(dir string) (*DiskStore, error) {
	if dir == "" {
		return nil, errors.New("photo: new disk store: root directory is empty")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("photo: new disk store: %w", err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("photo: new disk store: %w", err)
	}
	_ = r.Close()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("photo: new disk store: %w", err)
	}
	return &DiskStore{dir: abs}, nil
}

// Get implements [Store].
func (s *DiskStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	root, err := s.open(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.Open(key)
	if err != nil {
		return nil, opError("get", key, err)
	}
	if fi, err := f.Stat(); err != nil || fi.IsDir() {
		_ = f.Close()
		if err == nil {
			err = fs.ErrNotExist // a directory is not an object
		}
		return nil, opError("get", key, err)
	}
	return f, nil
}

// Put implements [Store]. It writes to a temporary file, syncs it and renames
// it over key, so a concurrent Get sees either the old or the new object.
func (s *DiskStore) Put(ctx context.Context, key string, r io.Reader) (err error) {
	root, err := s.open(ctx, "put", key)
	if err != nil {
		return err
	}
	defer root.Close()
	if dir := path.Dir(key); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return opError("put", key, err)
		}
	}
	if err := root.MkdirAll(tmpDir, 0o755); err != nil {
		return opError("put", key, err)
	}
	tmp := tmpDir + "/put-" + rand.Text()
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return opError("put", key, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = root.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
		return opError("put", key, err)
	}
	if err := f.Sync(); err != nil {
		return opError("put", key, err)
	}
	if err := f.Close(); err != nil {
		return opError("put", key, err)
	}
	if err := root.Rename(tmp, key); err != nil {
		return opError("put", key, err)
	}
	return nil
}

// Delete implements [Store]. Empty parent directories are left in place.
func (s *DiskStore) Delete(ctx context.Context, key string) error {
	root, err := s.open(ctx, "delete", key)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.Remove(key); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return opError("delete", key, err)
	}
	return nil
}

// List implements [Store]. An empty prefix lists every key. A prefix that
// could never match a valid key (absolute, or with a "." or ".." element) is
// rejected with ErrInvalidKey.
func (s *DiskStore) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("photo: list %q: %w", prefix, err)
	}
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		return nil, fmt.Errorf("photo: list %q: %w", prefix, err)
	}
	defer root.Close()

	// Walk only the deepest directory the prefix names in full.
	start := "."
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = prefix[:i]
	}
	var keys []string
	err = fs.WalkDir(root.FS(), start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			if p == tmpDir {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && strings.HasPrefix(p, prefix) {
			keys = append(keys, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("photo: list %q: %w", prefix, err)
	}
	// WalkDir visits "a/b" before "a.txt"; callers expect string order.
	slices.Sort(keys)
	return keys, nil
}

// open checks ctx and key and opens the store root.
func (s *DiskStore) open(ctx context.Context, op, key string) (*os.Root, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validateKey(key); err != nil {
		return nil, fmt.Errorf("photo: %s %q: %w", op, key, err)
	}
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		return nil, fmt.Errorf("photo: %s %q: %w", op, key, err)
	}
	return root, nil
}

// opError wraps err from a file operation on key, adding ErrNotFound when the
// file does not exist.
func opError(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("photo: %s %q: %w", op, key, ErrNotFound)
	}
	return fmt.Errorf("photo: %s %q: %w", op, key, err)
}

// validateKey reports why key is not a valid store key, or nil.
func validateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: key is empty", ErrInvalidKey)
	case key == tmpDir || strings.HasPrefix(key, tmpDir+"/"):
		return fmt.Errorf("%w: keys under %q are reserved", ErrInvalidKey, tmpDir+"/")
	}
	return validateElems(key, false)
}

// validatePrefix reports why prefix can never match a valid key, or nil.
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return validateElems(prefix, true)
}

// validateElems checks the slash-separated elements of a key. With
// partialLast, the last element may be empty (a prefix ending in "/").
func validateElems(s string, partialLast bool) error {
	const allowed = "keys are relative slash-separated paths without empty, \".\" or \"..\" elements"
	if strings.ContainsAny(s, "\\\x00") {
		return fmt.Errorf("%w: contains a backslash or NUL byte; %s", ErrInvalidKey, allowed)
	}
	if strings.HasPrefix(s, "/") {
		return fmt.Errorf("%w: absolute path; %s", ErrInvalidKey, allowed)
	}
	elems := strings.Split(s, "/")
	for i, e := range elems {
		last := i == len(elems)-1
		switch {
		case e == "" && last && partialLast:
		case e == "", e == ".", e == "..":
			return fmt.Errorf("%w: element %q; %s", ErrInvalidKey, e, allowed)
		}
	}
	return nil
}

// ctxReader stops a copy when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
