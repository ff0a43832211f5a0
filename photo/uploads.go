package photo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/outbox"
)

// DefaultPhotosTable is the default UploadsConfig.Table.
const DefaultPhotosTable = "photos"

// Upload modes, as reported by Uploads.Mode.
const (
	// ModeOutbox: the photos row and its photo.uploaded event are written in
	// one PostgreSQL transaction (package outbox).
	ModeOutbox = "outbox"
	// ModeDirect: no database; the event is published straight to the bus.
	ModeDirect = "direct"
)

var photosTableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// UploadsConfig configures Uploads. With DB and Outbox set, uploads go
// through the transactional outbox; with neither, they are published
// directly with Publisher.
type UploadsConfig struct {
	// DB holds the photos table. Nil: direct mode.
	DB *sql.DB
	// Table is the photos table. Default DefaultPhotosTable.
	Table string
	// Outbox stores the events in the upload's transaction (required with DB).
	Outbox *outbox.Outbox
	// Publisher publishes directly (required without DB): the API's router
	// publisher, or the bus's.
	Publisher message.Publisher
}

// Uploads is the API side of an upload: it records the photo and announces
// it with photo.uploaded. Safe for concurrent use.
type Uploads struct {
	cfg UploadsConfig
}

// NewUploads checks cfg and returns Uploads.
func NewUploads(cfg UploadsConfig) (*Uploads, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultPhotosTable
	}
	var errs []error
	if !photosTableName.MatchString(cfg.Table) {
		errs = append(errs, fmt.Errorf("photo: uploads: table %q must match [a-z_][a-z0-9_]{0,62}", cfg.Table))
	}
	switch {
	case cfg.DB != nil && cfg.Outbox == nil:
		errs = append(errs, errors.New("photo: uploads: DB is set but Outbox is nil: the event must be stored in the upload's transaction"))
	case cfg.DB == nil && cfg.Publisher == nil:
		errs = append(errs, errors.New("photo: uploads: set DB and Outbox (outbox mode) or Publisher (direct mode)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Uploads{cfg: cfg}, nil
}

// Mode is ModeOutbox or ModeDirect.
func (u *Uploads) Mode() string {
	if u.cfg.DB != nil {
		return ModeOutbox
	}
	return ModeDirect
}

// CreatePhotosTable creates the photos table if it does not exist.
func CreatePhotosTable(ctx context.Context, db *sql.DB, table string) error {
	if table == "" {
		table = DefaultPhotosTable
	}
	if !photosTableName.MatchString(table) {
		return fmt.Errorf("photo: photos table %q must match [a-z_][a-z0-9_]{0,62}", table)
	}
	_, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS "`+table+`" (
		id TEXT PRIMARY KEY,
		owner_id TEXT NOT NULL,
		key TEXT NOT NULL,
		filename TEXT NOT NULL,
		content_type TEXT NOT NULL,
		size BIGINT NOT NULL,
		event_id TEXT NOT NULL,
		created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
	)`)
	if err != nil {
		return fmt.Errorf("photo: create photos table %s: %w", table, err)
	}
	return nil
}

// Upload records up (the original is already in the store) and publishes
// photo.uploaded with subject up.PhotoID and opts. In outbox mode the photos
// row and the event are one transaction: both or neither. It returns the
// event id.
func (u *Uploads) Upload(ctx context.Context, up Uploaded, opts ...bus.Option) (string, error) {
	opts = append([]bus.Option{bus.WithSubject(up.PhotoID)}, opts...)
	if u.cfg.DB == nil {
		return bus.Publish(ctx, u.cfg.Publisher, TypeUploaded, up, opts...)
	}
	return u.inTx(ctx, func(tx *sql.Tx) error { return nil }, up, opts...)
}

// UploadThenRollback does all that Upload does in outbox mode and rolls the
// transaction back: the photo and its event are not kept. It exists for
// tests and demonstrations of the outbox guarantee. It returns the event id
// that was not committed.
func (u *Uploads) UploadThenRollback(ctx context.Context, up Uploaded, opts ...bus.Option) (string, error) {
	if u.cfg.DB == nil {
		return "", errors.New("photo: UploadThenRollback needs outbox mode")
	}
	opts = append([]bus.Option{bus.WithSubject(up.PhotoID)}, opts...)
	return u.inTx(ctx, func(*sql.Tx) error { return errRollback }, up, opts...)
}

var errRollback = errors.New("rolled back on purpose")

func (u *Uploads) inTx(ctx context.Context, before func(*sql.Tx) error, up Uploaded, opts ...bus.Option) (id string, err error) {
	msg, err := bus.NewMessage(ctx, up, opts...)
	if err != nil {
		return "", err
	}
	tx, err := u.cfg.DB.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("photo: upload %s: begin: %w", up.PhotoID, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err = tx.ExecContext(ctx, `INSERT INTO "`+u.cfg.Table+`" (id, owner_id, key, filename, content_type, size, event_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, up.PhotoID, up.OwnerID, up.Key, up.Filename, up.ContentType, up.Size, msg.UUID); err != nil {
		return "", fmt.Errorf("photo: upload %s: insert: %w", up.PhotoID, err)
	}
	if err = u.cfg.Outbox.Publish(tx, TypeUploaded, msg); err != nil {
		return "", fmt.Errorf("photo: upload %s: %w", up.PhotoID, err)
	}
	if err = before(tx); errors.Is(err, errRollback) {
		return msg.UUID, tx.Rollback()
	} else if err != nil {
		return "", err
	}
	if err = tx.Commit(); err != nil {
		return "", fmt.Errorf("photo: upload %s: commit: %w", up.PhotoID, err)
	}
	return msg.UUID, nil
}
