package router

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/middleware"
)

// Handle registers a typed handler: each event's JSON data is decoded into T
// before fn is called. An event whose data does not decode is a permanent
// failure (dead-lettered at once with the decode error).
func Handle[T any](r *Router, name, pattern string, fn func(ctx context.Context, ev bus.Event[T]) error, opts ...HandlerOption) error {
	return r.AddHandler(name, pattern, func(ctx context.Context, msg *message.Message) error {
		ev, err := bus.Decode[T](msg)
		if err != nil {
			return middleware.Permanent(err)
		}
		return fn(ctx, ev)
	}, opts...)
}
