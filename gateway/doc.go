// Package gateway is the HTTP side of the event bus.
//
// A [Gateway] serves two endpoints (see docs/gateway.md), and its OpenAPI
// 3.1 description at GET /openapi.json ([OpenAPI]):
//
//   - POST /v1/events — ingress. Services POST CloudEvents in structured
//     mode (application/cloudevents+json), as a batch
//     (application/cloudevents-batch+json) or in binary mode (ce-* headers,
//     body = data). Each event becomes a Watermill message (UUID = event id,
//     metadata = every attribute and extension, payload = data) published
//     through the bus publisher. The answer is synchronous: 202 {"ids":[...]}
//     once the events are in Redis, or 400/401/403/413/429/503 with an
//     [ErrorBody], and then nothing was published. The request is decoded,
//     published and answered on its own goroutine. [NewIngressPublisher] is
//     the other side: a watermill-http Publisher that posts messages to a
//     gateway; [UnmarshalCloudEvent] is a watermill-http
//     UnmarshalMessageFunc for a Subscriber of one's own.
//   - GET /v1/stream — server-sent events to browsers. Every event addressed
//     to a room, a user or everyone (bus.IsAddressed) is also in the bus's
//     push stream; one reader per gateway process follows it with XREAD and
//     fans each event out to the browsers that want it (room, user or broadcast). The
//     SSE id is the push-stream entry id, so a reconnecting browser's
//     Last-Event-ID resumes exactly where it stopped; a resume from a
//     position the stream no longer holds first gets an "event: gap".
//
// # Concurrency
//
// [New] returns a Gateway whose Handler, Mount, Clients, Run and Close are
// safe for concurrent use. Mount handlers before serving. Run is called
// once, typically in its own goroutine; Close may be called from any
// goroutine, any number of times, before or after Run.
//
// Each ingress request is decoded and published on its own goroutine
// (net/http's), so requests publish concurrently through the bus publisher
// (safe for concurrent use) and a slow publish holds up no other request.
// Close refuses new ingress requests (503) and waits for those being
// published.
//
// Each stream runs on its request's goroutine, which alone writes its
// response. The push-stream reader runs on Run's goroutine, renders each
// event once, and hands it to streams through each stream's bounded queue
// without ever blocking; a stream writes everything queued for it with one
// flush per wake-up. A browser that falls more than Config.ClientBuffer
// events behind is disconnected (and resumes on reconnect), so one slow
// browser never delays the reader or the other browsers. Nothing the gateway calls back runs
// concurrently with itself for one stream.
//
// The gateway never closes the bus or its Redis client: the caller owns
// them.
package gateway
