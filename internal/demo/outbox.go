package demo

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/outbox"
	"github.com/shared-infra/eventbus/photo"
)

// startUploads sets up the api service's upload path: with
// Options.PostgresURL, a photos table and an outbox of this run (dropped at
// the end) and a Forwarder in the api process; without, direct publish.
func (p *pipeline) startUploads(ctx context.Context) (mode string, err error) {
	if p.opts.PostgresURL == "" {
		p.uploads, err = photo.NewUploads(photo.UploadsConfig{Publisher: p.apiPub})
		return "direct publish (no PostgreSQL configured)", err
	}
	db, err := sql.Open("pgx", p.opts.PostgresURL)
	if err != nil {
		return "", fmt.Errorf("demo: PostgreSQL: %w", err)
	}
	p.db = db
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		return "", fmt.Errorf("demo: PostgreSQL at %s does not answer: %w", bus.RedactURL(p.opts.PostgresURL), err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	run := "demo_" + hex.EncodeToString(b[:])
	p.tables = []string{run + "_photos", run + "_outbox", outbox.FailedTable(run + "_outbox")}
	if err := photo.CreatePhotosTable(pctx, db, p.tables[0]); err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	if err := outbox.InitializeSchema(pctx, db, p.tables[1]); err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	ob, err := outbox.New(outbox.Config{Table: p.tables[1], Bus: p.api.Publisher()}, p.opts.Logger)
	if err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	if p.uploads, err = photo.NewUploads(photo.UploadsConfig{DB: db, Table: p.tables[0], Outbox: ob}); err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	fw, err := outbox.NewForwarder(db, p.api.Publisher(), outbox.ForwarderConfig{Table: p.tables[1], PollInterval: 20 * time.Millisecond}, p.opts.Logger)
	if err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	p.forwarder = fw
	go func() { _ = fw.Run(context.WithoutCancel(ctx)) }()
	<-fw.Running()
	return fmt.Sprintf("transactional outbox on PostgreSQL %s (photos row + photo.uploaded in one transaction; tables %s, %s)",
		bus.RedactURL(p.opts.PostgresURL), p.tables[0], p.tables[1]), nil
}

// closeUploads stops the forwarder and drops the run's tables.
func (p *pipeline) closeUploads() {
	if p.forwarder != nil {
		_ = p.forwarder.Close()
	}
	if p.db == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, t := range p.tables {
		_, _ = p.db.ExecContext(ctx, `DROP TABLE IF EXISTS "`+t+`"`)
	}
	_ = p.db.Close()
}
