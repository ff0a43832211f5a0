package photo_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/pgtest"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/outbox"
	"github.com/shared-infra/eventbus/photo"
)

func TestNewUploadsConfigErrors(t *testing.T) {
	_, err := photo.NewUploads(photo.UploadsConfig{})
	require.ErrorContains(t, err, "set DB and Outbox (outbox mode) or Publisher (direct mode)")
	_, err = photo.NewUploads(photo.UploadsConfig{DB: pgtest.DB(t)})
	require.ErrorContains(t, err, "DB is set but Outbox is nil")
	_, err = photo.NewUploads(photo.UploadsConfig{Table: "photos; drop", Publisher: &nopPublisher{}})
	require.ErrorContains(t, err, `table "photos; drop" must match`)
}

type nopPublisher struct{ bus.Publisher }

func TestUploadsModes(t *testing.T) {
	ctx := context.Background()
	b, err := bus.New(bus.Config{ServiceName: "api", Client: redistest.Client(t), StreamPrefix: redistest.Prefix(t)}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	up := photo.Uploaded{PhotoID: "p1", OwnerID: "u1", Key: "originals/p1.jpg", Filename: "a.jpg", ContentType: "image/jpeg", Size: 3}

	direct, err := photo.NewUploads(photo.UploadsConfig{Publisher: b.Publisher()})
	require.NoError(t, err)
	assert.Equal(t, photo.ModeDirect, direct.Mode())
	id, err := direct.Upload(ctx, up)
	require.NoError(t, err)
	got, err := b.Client().XRange(ctx, b.Config().StreamKey(photo.TypeUploaded), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, id, got[0].Values[bus.AttrID])
	assert.Equal(t, "p1", got[0].Values[bus.AttrSubject])

	db := pgtest.DB(t)
	photos, table := pgtest.Name(t, db, "photos"), pgtest.Name(t, db, "outbox")
	t.Cleanup(func() { _, _ = db.Exec(`DROP TABLE IF EXISTS "` + outbox.FailedTable(table) + `"`) })
	require.NoError(t, photo.CreatePhotosTable(ctx, db, photos))
	require.NoError(t, outbox.InitializeSchema(ctx, db, table))
	require.NoError(t, photo.RegisterSchemas(ctx, b))
	ob, err := outbox.New(outbox.Config{Table: table, Bus: b.Publisher()}, nil)
	require.NoError(t, err)
	tx, err := photo.NewUploads(photo.UploadsConfig{DB: db, Table: photos, Outbox: ob})
	require.NoError(t, err)
	assert.Equal(t, photo.ModeOutbox, tx.Mode())

	id, err = tx.Upload(ctx, up)
	require.NoError(t, err)
	_, err = tx.UploadThenRollback(ctx, photo.Uploaded{PhotoID: "p2", OwnerID: "u1", Key: "originals/p2.jpg", Filename: "b.jpg", ContentType: "image/jpeg", Size: 3})
	require.NoError(t, err)
	// A payload that fails its schema: neither the row nor the event.
	_, err = tx.Upload(ctx, photo.Uploaded{PhotoID: "p3"})
	require.Error(t, err)

	var eventID string
	require.NoError(t, db.QueryRowContext(ctx, `SELECT event_id FROM "`+photos+`"`).Scan(&eventID)) // exactly one row
	assert.Equal(t, id, eventID)
	rows, _, err := outbox.Pending(ctx, db, table)
	require.NoError(t, err)
	assert.EqualValues(t, 1, rows, "one event waits for the forwarder")
	// A second upload of the same photo is refused by the photos key.
	_, err = tx.Upload(ctx, up)
	require.ErrorContains(t, err, "insert")
}
