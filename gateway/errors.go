package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/shared-infra/eventbus/bus"
)

// invalidConfig returns a Validate's problems as one error that is
// bus.ErrInvalidConfig (errors.Is), as every package's config errors are,
// or nil without problems.
func invalidConfig(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return configError(errs)
}

// configError is the problems of one Validate. Unlike
// fmt.Errorf("%w: %w", bus.ErrInvalidConfig, errors.Join(errs...)) it
// unwraps to the problems alone (as errors.Join does), so a caller can
// still count and walk them.
type configError []error

func (e configError) Error() string {
	return fmt.Sprintf("%v: %v", bus.ErrInvalidConfig, errors.Join(e...))
}

func (e configError) Unwrap() []error { return e }

func (e configError) Is(target error) bool { return target == bus.ErrInvalidConfig }

// Sentinel errors returned by this package. Match them with [errors.Is]; the
// returned errors wrap them with detail (never with a token or a secret).
var (
	// ErrNoCredentials means the request carried no token at all: no
	// Authorization header and no access_token query parameter. Respond 401.
	ErrNoCredentials = errors.New("gateway: no credentials")

	// ErrBadCredentials means a token was present but is not acceptable:
	// malformed, expired, not yet valid, wrong issuer or audience, signed with
	// a disallowed algorithm or with the wrong key, or an unknown API key.
	// Respond 401.
	ErrBadCredentials = errors.New("gateway: bad credentials")

	// ErrForbidden means the credentials are valid but do not grant the
	// operation, e.g. a JWT without the publish permission on ingress.
	// Respond 403.
	ErrForbidden = errors.New("gateway: forbidden")

	// ErrGatewayClosed is returned by [Gateway.Run] after [Gateway.Close],
	// and ends every open stream when the gateway stops.
	ErrGatewayClosed = errors.New("gateway: closed")
)

// Reasons a stream ends with (client.Err), and the SSE writer's refusal;
// closeReason maps them to metric labels.
var (
	// errClientClosed is the reason recorded by client.Close when it is
	// called with a nil reason.
	errClientClosed = errors.New("gateway: client closed")

	// errSlowClient is the reason a stream's client is closed with when its
	// queue overflows: the client has missed an event and must reconnect
	// (resuming from Last-Event-ID) rather than silently lose events.
	errSlowClient = errors.New("gateway: client send buffer overflowed")

	// errFlushNotSupported is returned by [newSSEWriter] when the
	// http.ResponseWriter (or anything it unwraps to) cannot flush, so events
	// would sit in a buffer instead of reaching the browser.
	errFlushNotSupported = errors.New("gateway: response writer does not support flushing")

	// errPushStreamGap is the reason open streams are closed with when the
	// push-stream reader finds that entries it had not read yet were trimmed
	// (after a Redis outage, say): browsers reconnect, and their resume
	// reports the gap with an "event: gap" message.
	errPushStreamGap = errors.New("gateway: push stream trimmed past the reader's position")

	// errTokenExpired is the reason a stream's client is closed with when
	// the token it was opened with expires (Principal.Expires): the browser
	// gets a [TokenExpiredEvent] message and must reconnect with a new token.
	errTokenExpired = errors.New("gateway: the stream's token expired")
)

// ErrorBody is the JSON body of every error response written by this
// package: {"error":{"status":400,"field":"type","message":"..."}}.
// Clients and tests decode error responses into it.
type ErrorBody struct {
	// Error holds the details.
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the content of [ErrorBody].
type ErrorDetail struct {
	// Status repeats the HTTP status code.
	Status int `json:"status"`
	// Field names the offending input (a CloudEvents attribute, a header or
	// a query parameter); empty, and omitted from the JSON, when the error is
	// not about one field.
	Field string `json:"field,omitempty"`
	// Message says what was wrong and what is allowed. It never contains a
	// token or a secret.
	Message string `json:"message"`
}

// httpStatus maps an error of this package to an HTTP status code:
// [ErrNoCredentials] and [ErrBadCredentials] give 401, [ErrForbidden] gives
// 403, nil gives 200 and anything else 500.
func httpStatus(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrNoCredentials), errors.Is(err, ErrBadCredentials):
		return http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	default:
		return http.StatusInternalServerError
	}
}

// writeError writes an [ErrorBody] with the given status. field may be empty.
func writeError(w http.ResponseWriter, status int, field, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	body := ErrorBody{Error: ErrorDetail{Status: status, Field: field, Message: msg}}
	// The status line is already out; a failed write means the client went
	// away, and there is nobody left to tell.
	_ = json.NewEncoder(w).Encode(body)
}

// writeAuthError writes the response for an error from [Authenticator] or
// [IngressAuth]: 401 with a WWW-Authenticate challenge, or 403. The message
// is the error's text, which never contains the token.
func writeAuthError(w http.ResponseWriter, err error) {
	status := httpStatus(err)
	switch {
	case errors.Is(err, ErrBadCredentials):
		w.Header().Set("WWW-Authenticate", `Bearer realm="eventbus", error="invalid_token"`)
	case status == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="eventbus"`)
	}
	writeError(w, status, "", err.Error())
}
