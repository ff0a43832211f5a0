package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Outbox stores events in the caller's database transaction. It is safe for
// use from many goroutines.
type Outbox struct {
	cfg    Config
	logger watermill.LoggerAdapter
}

// New returns an Outbox. The table must exist (InitializeSchema). A nil
// logger logs nothing.
func New(cfg Config, logger watermill.LoggerAdapter) (*Outbox, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	return &Outbox{cfg: cfg, logger: logger}, nil
}

// Table is the outbox table.
func (o *Outbox) Table() string { return o.cfg.Table }

// Publisher returns a message.Publisher that stores events in tx: Publish
// checks each event as a direct publish would (schema, attributes, size),
// gives it its trace context and correlation from msg.Context(), and
// inserts it into the outbox table; an invalid event inserts nothing and
// returns the error, and the caller rolls tx back. The events reach the bus
// when tx commits (and not at all if it rolls back). Use it with
// bus.Publish or bus.NewMessage like any publisher. Closing it does nothing
// to tx.
func (o *Outbox) Publisher(tx *sql.Tx) message.Publisher {
	var exec wsql.ContextExecutor
	if tx != nil {
		exec = wsql.TxFromStdSQL(tx)
	}
	var inner message.Publisher = txPublisher{tx: exec, o: o}
	inner = preparing{Publisher: inner, bus: o.cfg.Bus}
	return failing{Publisher: inner, tx: exec}
}

// failing makes a refused event fail the caller's transaction too: after
// the error, PostgreSQL has aborted tx, so a caller that goes on to commit
// gets an error from Commit and nothing of tx is written.
type failing struct {
	message.Publisher
	tx wsql.ContextExecutor
}

func (p failing) Publish(topic string, msgs ...*message.Message) error {
	err := p.Publisher.Publish(topic, msgs...)
	if err != nil && p.tx != nil {
		ctx := context.Background()
		if len(msgs) > 0 {
			ctx = msgs[0].Context()
		}
		_, _ = p.tx.ExecContext(ctx, abortTx) // fails, and so aborts tx
	}
	return err
}

const abortTx = `DO $$ BEGIN RAISE EXCEPTION 'eventbus outbox: an event of this transaction was refused; roll back'; END $$`

// Publish stores msgs, events of type topic, in tx (see Publisher). Each
// message's context should be the request's (bus.NewMessage(ctx, ...)), so
// the event continues its trace.
func (o *Outbox) Publish(tx *sql.Tx, topic string, msgs ...*message.Message) error {
	return o.Publisher(tx).Publish(topic, msgs...)
}

// preparing runs the bus publisher's enrichment and validation first.
type preparing struct {
	message.Publisher
	bus Preparer
}

func (p preparing) Publish(topic string, msgs ...*message.Message) error {
	if err := p.bus.Prepare(topic, msgs...); err != nil {
		return fmt.Errorf("outbox: not stored, nothing written: %w", err)
	}
	return p.Publisher.Publish(topic, msgs...)
}

// txPublisher is components/forwarder's enveloping Publisher over a
// watermill-sql Publisher bound to one transaction.
type txPublisher struct {
	tx wsql.ContextExecutor
	o  *Outbox
}

var errNoTx = errors.New("outbox: nil transaction: pass the *sql.Tx that writes your rows")

func (p txPublisher) Publish(topic string, msgs ...*message.Message) error {
	if p.tx == nil {
		return errNoTx
	}
	sp, err := wsql.NewPublisher(p.tx, wsql.PublisherConfig{SchemaAdapter: schema(p.o.cfg.Table, DefaultBatchSize)}, p.o.logger)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	fp := forwarder.NewPublisher(sp, forwarder.PublisherConfig{ForwarderTopic: p.o.cfg.Table})
	if err := fp.Publish(topic, msgs...); err != nil {
		return fmt.Errorf("outbox: store %d event(s) of type %s in %s: %w", len(msgs), topic, p.o.cfg.Table, err)
	}
	return nil
}

func (p txPublisher) Close() error { return nil }

// Pending returns how many events wait in the outbox table and the creation
// time age of the oldest, in seconds (0 when empty).
func Pending(ctx context.Context, db *sql.DB, table string) (rows int64, oldestAge float64, err error) {
	if table == "" {
		table = DefaultTable
	}
	if err := validateTable(table); err != nil {
		return 0, 0, err
	}
	err = db.QueryRowContext(ctx, `SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 FROM `+quote(table)).Scan(&rows, &oldestAge)
	if err != nil {
		return 0, 0, fmt.Errorf("outbox: count pending rows of %s: %w", table, err)
	}
	return rows, oldestAge, nil
}
