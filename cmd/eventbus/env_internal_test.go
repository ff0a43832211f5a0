package main

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestServeFlagsEnvDocumented: every flag of serve names its EVENTBUS_*
// variable in its help, and docs/cli.md lists every one of them.
func TestServeFlagsEnvDocumented(t *testing.T) {
	root := newRootCmd(&globals{io: &stdio{}})
	serve, _, err := root.Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	check := func(local bool) func(*pflag.Flag) {
		return func(f *pflag.Flag) {
			if f.Name == "help" {
				return
			}
			env := envName(f.Name)
			if local && !strings.Contains(f.Usage, "[$"+env+"]") {
				t.Errorf("--%s: help %q does not name %s", f.Name, f.Usage, env)
			}
			row := "| `--" + f.Name + "` | `" + env + "` |"
			if !strings.Contains(string(doc), row) {
				t.Errorf("docs/cli.md has no row %q", row)
			}
		}
	}
	serve.LocalFlags().VisitAll(check(true))
	serve.InheritedFlags().VisitAll(check(false))
	if !strings.Contains(serve.Long, "EVENTBUS_REDIS_URL") || !strings.Contains(serve.Long, "EVENTBUS_PREFIX") || !strings.Contains(serve.Long, "16 bytes") {
		t.Errorf("serve --help does not name the global variables or the 16-byte key rule")
	}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{"listen": "EVENTBUS_LISTEN", "allow-origin": "EVENTBUS_ALLOW_ORIGIN", "jwt-secret-file": "EVENTBUS_JWT_SECRET_FILE"} {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}
