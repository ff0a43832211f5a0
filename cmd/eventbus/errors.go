package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
)

// usageError is a mistake in how the command was called (bad arguments, an
// invalid event type or pattern, invalid JSON): exit code 2. Its message says
// what was wrong and what to do.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usageError formatted as fmt.Errorf would (%w allowed).
func usagef(format string, a ...any) error {
	return &usageError{err: fmt.Errorf(format, a...)}
}

// failure is an operational failure (Redis unreachable, a publish that
// failed): exit code 1.
type failure struct{ err error }

func (e *failure) Error() string { return e.err.Error() }
func (e *failure) Unwrap() error { return e.err }

// exitCode maps an error returned by the root command to an exit code. Errors
// that are neither usageError nor failure come from cobra itself (unknown
// command or flag, wrong number of arguments): usage errors.
func exitCode(err error) int {
	var u *usageError
	var f *failure
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &u):
		return exitUsage
	case errors.As(err, &f):
		return exitFail
	default:
		return exitUsage
	}
}

// isOurs reports whether err was returned by a subcommand (as opposed to
// cobra's argument and flag parsing).
func isOurs(err error) bool {
	var u *usageError
	var f *failure
	return errors.As(err, &u) || errors.As(err, &f)
}

// classify makes every error a subcommand returns a usageError or a failure:
// bad input the bus rejects (type, pattern, data, attributes, size, config)
// is a usage error, anything else a failure.
func classify(err error) error {
	if err == nil || isOurs(err) {
		return err
	}
	for _, target := range []error{
		bus.ErrInvalidType, bus.ErrInvalidPattern, bus.ErrInvalidData,
		bus.ErrInvalidAttribute, bus.ErrEventTooLarge, bus.ErrInvalidConfig,
		bus.ErrDelayTooLong, bus.ErrInvalidSchema, bus.ErrIncompatibleSchema,
		bus.ErrUnknownSchema,
	} {
		if errors.Is(err, target) {
			return &usageError{err: err}
		}
	}
	return &failure{err: err}
}

// redisError turns an error from Redis into a failure that says what to do:
// start Redis or fix the URL when it cannot be reached, fix the credentials
// when they are refused; otherwise "<doing>: <err>".
func (g *globals) redisError(doing string, err error) error {
	where := bus.RedactURL(g.redisURL())
	switch {
	case isUnreachable(err):
		return &failure{err: fmt.Errorf("cannot reach Redis at %s: %s — start Redis or set --redis-url/REDIS_URL", where, unreachableReason(err))}
	case isAuthError(err):
		return &failure{err: fmt.Errorf("credentials refused by Redis at %s: %s — check the user and password in --redis-url/REDIS_URL", where, strings.TrimSuffix(err.Error(), "."))}
	default:
		return &failure{err: fmt.Errorf("%s: %w", doing, err)}
	}
}

// isUnreachable reports whether err means Redis could not be reached at all.
func isUnreachable(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &op) || errors.As(err, &dns) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

// unreachableReason is the short cause of an isUnreachable error.
func unreachableReason(err error) string {
	var dns *net.DNSError
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the server (is it Redis, and does it want TLS, rediss://?)"
	case errors.As(err, &dns):
		return "unknown host " + dns.Name
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no answer within %s", pingTimeout)
	default:
		return err.Error()
	}
}

// isAuthError reports whether Redis refused the connection's credentials
// (NOAUTH, WRONGPASS): Redis error replies are identified by their code.
func isAuthError(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "NOAUTH") || strings.HasPrefix(msg, "WRONGPASS") ||
		strings.HasPrefix(msg, "ERR AUTH") || strings.Contains(msg, "invalid password")
}
