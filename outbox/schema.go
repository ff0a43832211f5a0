package outbox

import (
	"context"
	"database/sql"
	"fmt"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
)

// schema is watermill-sql's PostgreSQL queue schema on the outbox table: one
// row per event ("offset" SERIAL, uuid, payload JSON = the forwarder
// envelope, metadata, acked, created_at), read in offset order FOR UPDATE.
func schema(table string, batch int) wsql.PostgreSQLQueueSchema {
	return wsql.PostgreSQLQueueSchema{
		GenerateMessagesTableName: func(string) string { return quote(table) },
		SubscribeBatchSize:        batch,
	}
}

func quote(ident string) string { return `"` + ident + `"` } // ident passed validateTable

// FailedTable is the table that keeps the rows the Forwarder could not
// forward for good, with the reason: a row that is not an outbox envelope, or
// an event the bus refuses (one that became invalid between its commit and
// its forwarding, say after a size limit change). Such a row would otherwise
// block the rows behind it forever. Its name is "<table>_failed".
func FailedTable(table string) string { return table + "_failed" }

// InitializeSchema creates the outbox table and its "_failed" companion if
// they do not exist. Run it once (at deployment or start-up) with a *sql.DB,
// not inside an application transaction. It is idempotent.
func InitializeSchema(ctx context.Context, db *sql.DB, table string) error {
	if table == "" {
		table = DefaultTable
	}
	if err := validateTable(table); err != nil {
		return err
	}
	qs, err := schema(table, DefaultBatchSize).SchemaInitializingQueries(wsql.SchemaInitializingQueriesParams{Topic: table})
	if err != nil {
		return err
	}
	stmts := make([]string, 0, len(qs)+1)
	for _, q := range qs {
		stmts = append(stmts, q.Query)
	}
	stmts = append(stmts, `CREATE TABLE IF NOT EXISTS `+quote(FailedTable(table))+` (
		"id" TEXT NOT NULL,
		"type" TEXT NOT NULL,
		"data" BYTEA,
		"metadata" JSON,
		"reason" TEXT NOT NULL,
		"failed_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
	)`)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("outbox: initialize schema of %s: %w", table, err)
	}
	defer func() { _ = tx.Rollback() }()
	// Serialize concurrent initializations (CREATE TABLE IF NOT EXISTS races).
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, wsql.DefaultSchemaInitializationLock("eventbus_outbox:"+table)); err != nil {
		return fmt.Errorf("outbox: initialize schema of %s: %w", table, err)
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("outbox: initialize schema of %s: %w", table, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("outbox: initialize schema of %s: %w", table, err)
	}
	return nil
}

// offsets is watermill-sql's queue offsets adapter with delete on ack, made
// to delete only the rows that were forwarded. The stock adapter deletes
// every row of the batch it read, and the subscriber stops mid-batch when it
// is closed: the rest of the batch would be deleted unsent.
type offsets struct {
	wsql.PostgreSQLQueueOffsetsAdapter
}

func newOffsets(table string) offsets {
	return offsets{wsql.PostgreSQLQueueOffsetsAdapter{
		DeleteOnAck:               true,
		GenerateMessagesTableName: func(string) string { return quote(table) },
	}}
}

func (a offsets) AckMessageQuery(params wsql.AckMessageQueryParams) (wsql.Query, error) {
	done := make([]wsql.Row, 0, len(params.Rows))
	for _, r := range params.Rows { // in offset order; LastRow is the last forwarded
		if r.Offset <= params.LastRow.Offset {
			done = append(done, r)
		}
	}
	params.Rows = done
	return a.PostgreSQLQueueOffsetsAdapter.AckMessageQuery(params)
}
