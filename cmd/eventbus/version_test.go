package main_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestVersion checks `eventbus version`, `--json` and `--version` against
// what the go command reads from the same binary (go version -m): the
// module version, and vcs.revision / vcs.modified when the build has them.
func TestVersion(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "version", "-m", binary).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	wantVersion, wantRev, wantModified := "", "unknown", false
	for l := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && f[0] == "mod":
			wantVersion = f[2]
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision="):
			wantRev = strings.TrimPrefix(f[1], "vcs.revision=")
		case len(f) == 2 && f[0] == "build" && f[1] == "vcs.modified=true":
			wantModified = true
		}
	}
	if wantVersion == "" {
		t.Fatalf("go version -m shows no module version:\n%s", out)
	}

	r := cli(t, "", "version", "--json").ok(t)
	var v struct {
		Version, Revision, GoVersion string
		Modified                     bool
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("version --json: %v\n%s", err, r.stdout)
	}
	if v.Version != wantVersion || v.Revision != wantRev || v.Modified != wantModified || !strings.HasPrefix(v.GoVersion, "go1.") {
		t.Errorf("version --json = %+v, want version %s, revision %s, modified %v (go version -m)", v, wantVersion, wantRev, wantModified)
	}

	line := cli(t, "", "version").ok(t).stdout
	if !strings.HasPrefix(line, "eventbus "+wantVersion+", revision "+wantRev) || strings.Count(line, "\n") != 1 {
		t.Errorf("version = %q", line)
	}
	if got := cli(t, "", "--version").ok(t).stdout; got != line {
		t.Errorf("--version = %q, want the line of 'eventbus version' %q", got, line)
	}
}
