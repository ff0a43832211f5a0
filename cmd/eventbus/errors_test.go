package main_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	_, _, global := setup(t)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown flag", []string{"publish", "a.b", "{}", "--bogus"}, []string{"unknown flag: --bogus", "eventbus publish --help"}},
		{"unknown global flag", []string{"--bogus", "stats"}, []string{"unknown flag: --bogus"}},
		{"unknown command", []string{"publsh"}, []string{`unknown command "publsh"`, `(did you mean "publish"?)`, "--help"}},
		{"unknown dlq command", []string{"dlq", "lst"}, []string{`unknown command "lst"`}},
		{"no type", []string{"publish"}, []string{"usage: eventbus publish TYPE"}},
		{"too many args", []string{"tail", "a.b", "c.d"}, []string{"usage: eventbus tail PATTERN"}},
		{"invalid type", []string{"publish", "Photo.Uploaded", "{}"}, []string{`invalid event type "Photo.Uploaded"`, "[a-z0-9_-]"}},
		{"empty token", []string{"publish", "photo..uploaded", "{}"}, []string{"invalid event type", "empty token", "[a-z0-9_-]"}},
		{"wildcard in type", []string{"publish", "photo.*", "{}"}, []string{"invalid event type", "[a-z0-9_-]"}},
		{"invalid JSON", []string{"publish", "a.b", "{photoId: 1}"}, []string{"DATA is not valid JSON", "--content-type"}},
		{"invalid pattern", []string{"tail", "photo.>.x"}, []string{"invalid pattern", `">" may only be the last token`}},
		{"invalid --from", []string{"tail", "a.b", "--from", "yesterday"}, []string{`invalid --from "yesterday"`, "duration"}},
		{"invalid stats pattern", []string{"stats", "A"}, []string{"invalid pattern"}},
		{"id with stdin", []string{"publish", "a.b", "-", "--id", "x"}, []string{"--id"}},
		{"invalid redis url", []string{"--redis-url", "ftp://u:hunter2secret@x", "stats"}, []string{"invalid Redis URL", "redis://"}},
		{"invalid sentinel url", []string{"--redis-url", "redis://s1:26379?master_name=m&password=hunter2secret&bogus=1", "stats"}, []string{"invalid Redis URL", "sentinel URL", "unexpected option: bogus", "master_name"}},
		{"invalid cluster url", []string{"--redis-url", "redis://u:hunter2secret@n1:7000?addr=n2", "stats"}, []string{"invalid Redis URL", "cluster URL", "unable to parse addr param: n2"}},
		{"invalid prefix", []string{"--prefix", "a{b}:", "stats"}, []string{"StreamPrefix"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := cli(t, "", with(global, tc.args...)...)
			r.failsWith(t, 2, tc.want...)
			if strings.Contains(r.stderr, "hunter2secret") {
				t.Errorf("stderr shows the password: %s", r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

func TestUnreachableRedis(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		env  string
	}{
		{"flag", []string{"--redis-url", "redis://127.0.0.1:1/0", "publish", "a.b", "{}"}, ""},
		{"flag with password", []string{"--redis-url", "redis://admin:hunter2secret@127.0.0.1:1/0", "stats"}, ""},
		{"env with password", []string{"dlq", "list"}, "redis://:hunter2secret@127.0.0.1:1/0"},
		// tail and serve wait for an unreachable Redis: see tail_wait_test.go.
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, tc.args...)
			cmd.Env = childEnv("REDIS_URL=" + tc.env)
			var out, errb strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			r := result{stdout: out.String(), stderr: errb.String()}
			if ee, ok := err.(*exec.ExitError); ok {
				r.code = ee.ExitCode()
			}
			r.failsWith(t, 1, "cannot reach Redis at redis://", "127.0.0.1:1", "connection refused", "start Redis or set --redis-url/REDIS_URL")
			if strings.Contains(r.stderr, "hunter2secret") {
				t.Errorf("stderr shows the password: %s", r.stderr)
			}
		})
	}
}

func TestHelpHasExamples(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--help"}, {"publish", "--help"}, {"tail", "--help"}, {"stats", "--help"},
		{"dlq", "--help"}, {"dlq", "list", "--help"}, {"dlq", "show", "--help"},
		{"dlq", "redrive", "--help"}, {"dlq", "purge", "--help"}, {"serve", "--help"}, {"demo", "--help"},
		{"bench", "--help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			r := cli(t, "", args...).ok(t)
			if !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "eventbus ") {
				t.Errorf("help has no examples:\n%s", r.stdout)
			}
		})
	}
}
