package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/shared-infra/eventbus/bus"
)

// Forwarder moves committed events from the outbox table to the bus: in one
// database transaction it reads up to BatchSize rows (locked), publishes
// each event through the publisher it was given, and deletes the rows it
// published. Safe for use from many goroutines.
type Forwarder struct {
	cfg     ForwarderConfig
	db      *sql.DB
	logger  watermill.LoggerAdapter
	sub     *wsql.Subscriber
	fw      *forwarder.Forwarder
	metrics *metrics

	closeOnce sync.Once
	closeErr  error
}

// NewForwarder returns a Forwarder reading the outbox table of db and
// publishing to pub: the bus's Publisher (bus.Bus.Publisher()), whose
// deduplication by event id drops an event a killed Forwarder had published
// but not yet deleted. The Forwarder never closes db or pub. A nil logger
// logs nothing.
func NewForwarder(db *sql.DB, pub message.Publisher, cfg ForwarderConfig, logger watermill.LoggerAdapter) (*Forwarder, error) {
	cfg.setDefaults()
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if db == nil {
		errs = append(errs, fmt.Errorf("%w: db is nil", ErrInvalidConfig))
	}
	if pub == nil {
		errs = append(errs, fmt.Errorf("%w: publisher is nil: pass the bus's Publisher", ErrInvalidConfig))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	m, err := newMetrics(cfg.Registerer, db, cfg.Table)
	if err != nil {
		return nil, err
	}
	ackDeadline := 30 * time.Second
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromStdSQL(db), wsql.SubscriberConfig{
		AckDeadline:    &ackDeadline,
		PollInterval:   cfg.PollInterval,
		ResendInterval: cfg.RetryInterval,
		RetryInterval:  cfg.RetryInterval,
		SchemaAdapter:  schema(cfg.Table, cfg.BatchSize),
		OffsetsAdapter: newOffsets(cfg.Table),
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("outbox: forwarder: %w", err)
	}
	f := &Forwarder{cfg: cfg, db: db, logger: logger, sub: sub, metrics: m}
	f.fw, err = forwarder.NewForwarder(sub, counting{pub: pub, m: m}, logger, forwarder.Config{
		ForwarderTopic: cfg.Table,
		CloseTimeout:   cfg.CloseTimeout,
		Middlewares:    []message.HandlerMiddleware{f.setAside},
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: forwarder: %w", err)
	}
	return f, nil
}

// Run creates the tables if they are missing (InitializeSchema; a failure is
// logged, the database may come up later) and forwards until ctx is done or
// Close is called. It returns after the last event being forwarded is
// published and its row deleted (bounded by CloseTimeout).
func (f *Forwarder) Run(ctx context.Context) error {
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := InitializeSchema(ictx, f.db, f.cfg.Table); err != nil {
		f.logger.Error("outbox: cannot initialize the schema; forwarding will retry", err, nil)
	}
	cancel()
	return f.fw.Run(ctx)
}

// Running is closed once the Forwarder is running.
func (f *Forwarder) Running() chan struct{} { return f.fw.Running() }

// Close stops forwarding and waits (CloseTimeout) for the event in flight.
// Safe to call more than once.
func (f *Forwarder) Close() error {
	f.closeOnce.Do(func() {
		f.closeErr = f.fw.Close()
		if err := f.sub.Close(); err != nil && f.closeErr == nil {
			f.closeErr = err
		}
	})
	return f.closeErr
}

// envelope is the part of components/forwarder's envelope the Forwarder
// checks before forwarding.
type envelope struct {
	DestinationTopic string            `json:"destination_topic"`
	UUID             string            `json:"uuid"`
	Payload          []byte            `json:"payload"`
	Metadata         map[string]string `json:"metadata"`
}

// permanent reports whether the bus refused an event for good.
func permanent(err error) bool {
	for _, e := range []error{bus.ErrInvalidType, bus.ErrInvalidAttribute, bus.ErrInvalidData, bus.ErrEventTooLarge} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// setAside is a handler middleware of the forwarding handler: a row that is
// not an envelope, or whose event the bus refuses for good, is moved to the
// "_failed" table in the reading transaction (so it is deleted from the
// outbox), instead of blocking the rows behind it for ever.
func (f *Forwarder) setAside(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		var env envelope
		reason := ""
		if err := json.Unmarshal(msg.Payload, &env); err != nil {
			reason = "not an outbox envelope: " + err.Error()
		} else if env.DestinationTopic == "" {
			reason = "not an outbox envelope: no destination_topic"
		}
		if reason == "" {
			out, err := h(msg)
			if err == nil || !permanent(err) {
				return out, err
			}
			reason = err.Error()
		}
		tx, ok := wsql.TxFromContext(msg.Context())
		if !ok {
			return nil, fmt.Errorf("outbox: cannot set aside row %s (%s): no transaction in context", msg.UUID, reason)
		}
		id, data, md := env.UUID, env.Payload, env.Metadata
		if id == "" {
			id, data = msg.UUID, msg.Payload
		}
		mdJSON, _ := json.Marshal(md) // map[string]string always marshals
		_, err := tx.ExecContext(msg.Context(), `INSERT INTO `+quote(FailedTable(f.cfg.Table))+
			` (id, type, data, metadata, reason) VALUES ($1, $2, $3, $4, $5)`, id, env.DestinationTopic, data, string(mdJSON), reason)
		if err != nil {
			return nil, fmt.Errorf("outbox: set aside row %s (%s): %w", msg.UUID, reason, err)
		}
		f.metrics.failed()
		f.logger.Error("outbox: event set aside in "+FailedTable(f.cfg.Table), errors.New(reason), watermill.LogFields{"event_id": id, "type": env.DestinationTopic})
		return nil, nil
	}
}

// counting publishes to pub and counts the outcome.
type counting struct {
	pub message.Publisher
	m   *metrics
}

func (c counting) Publish(topic string, msgs ...*message.Message) error {
	err := c.pub.Publish(topic, msgs...)
	c.m.published(msgs, err)
	return err
}

func (c counting) Close() error { return nil } // the caller owns pub
