// Package doccheck holds the docs to the rule that every Go snippet in
// README.md and docs/*.md is compiled and run: each ```go block must be
// preceded by a marker naming the test or example that runs it,
//
//	<!-- snippet: router.Example_readme -->
//
// (the package directory relative to the module root, a dot, the function),
// and the block's code must appear in that function's body. The function must
// be a TestXxx or an ExampleXxx with an output comment (go test compiles an
// example without one but never runs it). A marker may also name a type
// declared in a _test.go file, for a snippet that is a declaration (a struct
// excerpt): it is compiled, and there is nothing to run.
//
// Matching is by Go tokens, so layout does not count: comments, blank lines
// and semicolons are ignored, and a snippet line may join several lines of
// the function (`if err != nil { log.Fatal(err) }`). Each snippet line must
// match whole lines of the function, in order; the function may have more
// lines before, between and after (set-up, output). A function line ending in
// `// doc: TEXT` is compared as TEXT instead (`// doc: -`: as nothing), for
// the few places where a test must differ from what a reader would write,
// such as a Redis URL or a unique key prefix.
//
// TestDocs (doccheck_test.go) runs the check on the repository, so `go test
// ./...` (make test) fails when a snippet drifts from its runner.
package doccheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/doc"
	"go/parser"
	"go/scanner"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Snippet is one ```go block of a markdown file.
type Snippet struct {
	File   string // relative to the root
	Line   int    // of the ```go fence
	Marker string // "dir.Func", empty when the block has none
	Code   string
}

// Files lists README.md and docs/*.md under root, relative to it.
func Files(root string) ([]string, error) {
	files := []string{"README.md"}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		rel, err := filepath.Rel(root, d)
		if err != nil {
			return nil, err
		}
		files = append(files, rel)
	}
	sort.Strings(files[1:])
	return files, nil
}

const markerOpen, markerClose = "<!-- snippet:", "-->"

// Snippets returns the ```go blocks of one markdown file, each with the
// marker on the nearest non-blank line above its fence, if any.
func Snippets(root, file string) ([]Snippet, error) {
	data, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		return nil, err
	}
	var (
		out     []Snippet
		cur     *Snippet
		code    strings.Builder
		inFence bool // any fence, so a ```go inside a ```markdown block is not taken
		prev    string
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trim := strings.TrimSpace(line)
		switch {
		case !inFence && strings.HasPrefix(trim, "```"):
			inFence = true
			if strings.TrimSpace(strings.TrimPrefix(trim, "```")) == "go" {
				cur = &Snippet{File: file, Line: n, Marker: marker(prev)}
				code.Reset()
			}
		case inFence && trim == "```":
			inFence = false
			if cur != nil {
				cur.Code = code.String()
				out = append(out, *cur)
				cur = nil
			}
		case cur != nil:
			code.WriteString(line)
			code.WriteByte('\n')
		}
		if trim != "" {
			prev = trim
		}
	}
	return out, sc.Err()
}

func marker(line string) string {
	if !strings.HasPrefix(line, markerOpen) || !strings.HasSuffix(line, markerClose) {
		return ""
	}
	return strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, markerOpen), markerClose))
}

// Check checks every snippet of README.md and docs/*.md under root and
// returns one error per snippet that breaks the rule.
func Check(root string) ([]Snippet, []error) {
	files, err := Files(root)
	if err != nil {
		return nil, []error{err}
	}
	var (
		all  []Snippet
		errs []error
	)
	pkgs := map[string]*testPkg{}
	for _, f := range files {
		snips, err := Snippets(root, f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, s := range snips {
			all = append(all, s)
			if err := checkSnippet(root, s, pkgs); err != nil {
				line := s.Line // the fence, or the snippet line that is not in the runner
				if me := (*MismatchError)(nil); errors.As(err, &me) {
					line += me.Line
				}
				errs = append(errs, fmt.Errorf("%s:%d: %w", s.File, line, err))
			}
		}
	}
	return all, errs
}

type testPkg struct {
	fset  *token.FileSet
	files []*ast.File
	src   map[*ast.File][]byte
	err   error
}

func loadTests(root, dir string, pkgs map[string]*testPkg) *testPkg {
	if p, ok := pkgs[dir]; ok {
		return p
	}
	p := &testPkg{fset: token.NewFileSet(), src: map[*ast.File][]byte{}}
	pkgs[dir] = p
	names, err := filepath.Glob(filepath.Join(root, dir, "*_test.go"))
	if err != nil || len(names) == 0 {
		p.err = fmt.Errorf("no _test.go files in %s", dir)
		return p
	}
	for _, name := range names {
		src, err := os.ReadFile(name)
		if err != nil {
			p.err = err
			return p
		}
		f, err := parser.ParseFile(p.fset, name, src, parser.ParseComments)
		if err != nil {
			p.err = err
			return p
		}
		p.files = append(p.files, f)
		p.src[f] = src
	}
	return p
}

func checkSnippet(root string, s Snippet, pkgs map[string]*testPkg) error {
	if s.Marker == "" {
		return fmt.Errorf("```go block without a %s dir.Func %s marker above it", markerOpen, markerClose)
	}
	i := strings.LastIndex(s.Marker, ".")
	if i <= 0 || i == len(s.Marker)-1 {
		return fmt.Errorf("marker %q: want dir.Func", s.Marker)
	}
	dir, name := s.Marker[:i], s.Marker[i+1:]
	p := loadTests(root, filepath.FromSlash(dir), pkgs)
	if p.err != nil {
		return fmt.Errorf("marker %q: %w", s.Marker, p.err)
	}
	body, err := p.runner(name)
	if err != nil {
		return fmt.Errorf("marker %q: %w", s.Marker, err)
	}
	if err := Match(s.Code, body); err != nil {
		return fmt.Errorf("marker %q: %w", s.Marker, err)
	}
	return nil
}

// MismatchError is Match's error: the first snippet line not found.
type MismatchError struct {
	Line   int    // in the snippet, from 1
	Tokens string // that line's tokens, space-separated
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("snippet line %d (%s) is not in the runner's body after what matched so far", e.Line, e.Tokens)
}

// runner returns the source of the named test or example's body (or of the
// named type's declaration).
func (p *testPkg) runner(name string) (string, error) {
	for _, f := range p.files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv != nil || d.Name.Name != name || d.Body == nil {
					continue
				}
				if err := p.runs(name); err != nil {
					return "", err
				}
				return p.text(f, d.Body.Lbrace+1, d.Body.Rbrace), nil
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					if ts, ok := spec.(*ast.TypeSpec); ok && ts.Name.Name == name {
						return p.text(f, d.Pos(), d.End()), nil
					}
				}
			}
		}
	}
	return "", fmt.Errorf("no func or type %s in the package's _test.go files", name)
}

// runs says whether go test runs the function: a TestXxx, or an example
// with an output comment.
func (p *testPkg) runs(name string) error {
	if strings.HasPrefix(name, "Test") {
		return nil
	}
	for _, ex := range doc.Examples(p.files...) {
		if "Example"+ex.Name == name {
			if ex.Output == "" && !ex.EmptyOutput {
				return fmt.Errorf("%s has no // Output: comment, so go test compiles it but never runs it", name)
			}
			return nil
		}
	}
	return fmt.Errorf("%s is neither a TestXxx nor an ExampleXxx", name)
}

func (p *testPkg) text(f *ast.File, from, to token.Pos) string {
	tf := p.fset.File(f.Pos())
	return string(p.src[f][tf.Offset(from):tf.Offset(to)])
}

// Match reports whether every line of snippet appears, as whole lines and in
// order, in body (see the package comment for what is compared).
func Match(snippet, body string) error {
	want := lines(snippet, false)
	have := lines(body, true)
	// flat is body's tokens in one run, starts the index in flat where each
	// body line begins (plus len(flat)).
	var flat []string
	starts := map[int]bool{0: true}
	for _, l := range have {
		flat = append(flat, l.toks...)
		starts[len(flat)] = true
	}
	at := 0
	for _, w := range want {
		found := -1
		for i := at; i+len(w.toks) <= len(flat); i++ {
			if starts[i] && starts[i+len(w.toks)] && equal(flat[i:i+len(w.toks)], w.toks) {
				found = i
				break
			}
		}
		if found < 0 {
			return &MismatchError{Line: w.line, Tokens: strings.Join(w.toks, " ")}
		}
		at = found + len(w.toks)
	}
	return nil
}

func equal(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

type line struct {
	line int
	toks []string
}

// lines splits src into its non-empty lines of Go tokens, without comments
// or semicolons. With subst, a line whose comment starts with "doc:" is
// replaced by the comment's text.
func lines(src string, subst bool) []line {
	fset := token.NewFileSet()
	file := fset.AddFile("", -1, len(src))
	var s scanner.Scanner
	s.Init(file, []byte(src), func(token.Position, string) {}, scanner.ScanComments)
	byLine := map[int][]string{}
	replaced := map[int][]string{}
	var order []int
	for {
		pos, tok, lit := s.Scan()
		if tok == token.EOF {
			break
		}
		n := file.Line(pos)
		switch {
		case tok == token.SEMICOLON:
			continue
		case tok == token.COMMENT:
			if text, ok := strings.CutPrefix(lit, "// doc:"); ok && subst {
				text = strings.TrimSpace(text)
				if text == "-" {
					text = ""
				}
				replaced[n] = flatten(lines(text, false))
			}
			continue
		}
		if len(byLine[n]) == 0 {
			order = append(order, n)
		}
		t := tok.String()
		if lit != "" {
			t = lit
		}
		byLine[n] = append(byLine[n], t)
	}
	var out []line
	for _, n := range order {
		toks := byLine[n]
		if r, ok := replaced[n]; ok {
			toks = r
		}
		if len(toks) > 0 {
			out = append(out, line{n, toks})
		}
	}
	return out
}

func flatten(ls []line) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.toks...)
	}
	return out
}
