package doccheck_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/internal/doccheck"
)

// TestDocs is the rule itself, on this repository: every ```go block of
// README.md and docs/*.md is run by the test or example its marker names.
func TestDocs(t *testing.T) {
	snips, errs := doccheck.Check(filepath.Join("..", ".."))
	for _, err := range errs {
		t.Error(err)
	}
	require.NotEmpty(t, snips, "no ```go block found: wrong root?")
	for _, s := range snips {
		t.Logf("%s:%d runs in %s", s.File, s.Line, s.Marker)
	}
}

const runner = `package p_test

import "fmt"

type Cfg struct {
	Name string
}

func ExampleRun() {
	url := "redis://127.0.0.1:6379/0" // doc: url := os.Getenv("REDIS_URL")
	fmt.Println("setup") // doc: -
	b, err := open(url)
	if err != nil {
		panic(err)
	}
	fmt.Println(b)
	// Output: setup
}

func ExampleSilent() {
	fmt.Println("x")
}

func TestThing(t *testing.T) {
	x := 1
	_ = x
}
`

func write(t *testing.T, readme string) string {
	t.Helper()
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "docs"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "p"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "p", "x_test.go"), []byte(runner), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "README.md"), []byte(readme), 0o644))
	return root
}

func block(marker, code string) string {
	m := ""
	if marker != "" {
		m = "<!-- snippet: " + marker + " -->\n"
	}
	return "Intro.\n\n" + m + "```go\n" + code + "```\n\nAfter.\n"
}

func TestCheckAcceptsAMatchingSnippet(t *testing.T) {
	for name, doc := range map[string]string{
		"same layout": block("p.ExampleRun", "url := os.Getenv(\"REDIS_URL\")\nb, err := open(url)\nif err != nil {\n\tpanic(err)\n}\n"),
		"joined lines and comments": block("p.ExampleRun",
			"// Open it.\nurl := os.Getenv(\"REDIS_URL\")\n\nb, err := open(url) // the bus\nif err != nil { panic(err) }\n"),
		"lines skipped between": block("p.ExampleRun", "url := os.Getenv(\"REDIS_URL\")\nfmt.Println(b)\n"),
		"a test":                block("p.TestThing", "_ = x\n"),
		"a type declaration":    block("p.Cfg", "type Cfg struct {\n    Name string\n}\n"),
		"no go block":           "```sh\ngo test\n```\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, errs := doccheck.Check(write(t, doc))
			assert.Empty(t, errs)
		})
	}
}

func TestCheckRefusesABrokenSnippet(t *testing.T) {
	for name, c := range map[string]struct{ doc, want string }{
		"code not in the body": {block("p.ExampleRun", "b, err := open(\"other\")\n"), "snippet line 1"},
		"lines out of order": {block("p.ExampleRun", "b, err := open(url)\nurl := os.Getenv(\"REDIS_URL\")\n"),
			"README.md:6: marker \"p.ExampleRun\": snippet line 2"},
		"the test's own line, not the doc's": {block("p.ExampleRun", "url := \"redis://127.0.0.1:6379/0\"\n"), "snippet line 1"},
		"a line omitted from the doc":        {block("p.ExampleRun", "fmt.Println(\"setup\")\n"), "snippet line 1"},
		"part of a line":                     {block("p.ExampleRun", "open(url)\n"), "snippet line 1"},
		"no marker":                          {block("", "x := 1\n"), "without a"},
		"unknown function":                   {block("p.ExampleGone", "x := 1\n"), "no func or type ExampleGone"},
		"unknown package":                    {block("q.ExampleRun", "x := 1\n"), "no _test.go files"},
		"example that never runs":            {block("p.ExampleSilent", "fmt.Println(\"x\")\n"), "no // Output:"},
		"marker without a dot":               {block("ExampleRun", "x := 1\n"), "want dir.Func"},
	} {
		t.Run(name, func(t *testing.T) {
			_, errs := doccheck.Check(write(t, c.doc))
			require.Len(t, errs, 1)
			assert.True(t, strings.HasPrefix(errs[0].Error(), "README.md:"), "%v: want the file and line", errs[0])
			assert.Contains(t, errs[0].Error(), c.want)
		})
	}
}

func TestSnippetsSkipsGoInsideOtherFences(t *testing.T) {
	root := write(t, "````markdown\n```go\nx := 1\n```\n````\n")
	snips, err := doccheck.Snippets(root, "README.md")
	require.NoError(t, err)
	assert.Empty(t, snips)
}
