package gateway

// What the tests of package gateway_test reach that is not exported.

type SSEWriter = sseWriter

var (
	NewSSEWriter   = newSSEWriter
	NewRateLimiter = newRateLimiter
	HTTPStatus     = httpStatus
	CORS           = cors

	ErrFlushNotSupported = errFlushNotSupported
)

const (
	DefaultIdleTTL = defaultIdleTTL

	CloseReasonClientGone = closeReasonClientGone
	CloseReasonShutdown   = closeReasonShutdown
)
