// Command eventbus is the command-line tool of the event bus: it publishes
// events, follows them live, shows handler lag and pending counts, and manages
// the dead-letter queue, all against the Redis the services use. It also runs
// the HTTP gateway (serve), the photo pipeline demo (demo) and the benchmark
// of the bus beside plain go-redis and watermill-redisstream (bench).
//
//	eventbus publish photo.uploaded '{"photoId":"p-42"}' --subject p-42
//	eventbus tail 'photo.>'
//	eventbus stats
//	eventbus dlq list
//
// Configuration comes from flags and the environment: --redis-url (default
// $REDIS_URL, else redis://127.0.0.1:6379/0), --prefix (default "events:")
// and --service (default "eventbus-cli", the source of events it publishes).
//
// Exit codes: 0 success, 1 operational failure (Redis unreachable, publish
// failed), 2 usage error (unknown flag, bad arguments, invalid event type or
// pattern, invalid JSON). Errors go to stderr on one line that says what to do;
// credentials in the Redis URL are never printed.
//
// docs/cli.md has a session transcript and every subcommand.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // operational failure
	exitUsage = 2 // usage error
)

func main() {
	// go-redis logs pool and dial problems to stderr on its own; the command
	// reports every error itself, on one line.
	redis.SetLogger(discardLogger{})

	// The first Ctrl-C (or SIGTERM) cancels ctx: tail ends normally, other
	// commands stop where they are. Signals then get their default
	// behaviour back, so a second Ctrl-C kills the process.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, newStdio(), os.Args[1:])
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit code. Every error
// is printed to std.err as one line.
func run(ctx context.Context, std *stdio, args []string) int {
	g := &globals{io: std}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(std.in)
	root.SetOut(std.out)
	root.SetErr(std.err)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	msg := oneLine(suggestions(err.Error()))
	if code == exitUsage && !isOurs(err) {
		// An error of cobra's own (unknown flag or command, wrong number of
		// arguments): point at the help.
		path := root.Name()
		if cmd != nil {
			path = cmd.CommandPath()
		}
		msg += " — run '" + path + " --help' for usage"
	}
	fmt.Fprintln(std.err, "eventbus: "+g.redact(msg))
	return code
}

// suggestions rewrites cobra's "\n\nDid you mean this?\n\tpublish\n" to
// fit on one line: ` (did you mean "publish"?)`.
func suggestions(msg string) string {
	before, after, ok := strings.Cut(msg, "\n\nDid you mean this?\n")
	if !ok {
		return msg
	}
	var names []string
	for _, n := range strings.Fields(after) {
		names = append(names, fmt.Sprintf("%q", n))
	}
	return before + " (did you mean " + strings.Join(names, " or ") + "?)"
}

// oneLine folds a multi-line message (errors.Join) into one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r", "")
	return strings.ReplaceAll(s, "\n", "; ")
}

// discardLogger silences go-redis's internal logger.
type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...any) {}

// stdio is the command's standard streams and whether they are terminals.
type stdio struct {
	in     io.Reader
	out    io.Writer
	err    io.Writer
	inTTY  bool
	outTTY bool
}

func newStdio() *stdio {
	return &stdio{
		in: os.Stdin, out: os.Stdout, err: os.Stderr,
		inTTY: isTerminal(os.Stdin), outTTY: isTerminal(os.Stdout),
	}
}

// errAborted is returned when the user answers no to a confirmation prompt.
var errAborted = errors.New("aborted: nothing was changed")
