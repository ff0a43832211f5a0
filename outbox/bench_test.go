package outbox_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/outbox"
	"github.com/shared-infra/eventbus/photo"
)

// BenchmarkUpload measures committed uploads per second (one uploader, a
// photos row each) and the latency from the upload's commit to a handler
// (a bus subscriber) receiving its photo.uploaded:
//
//   - outbox: row and event in one transaction; an in-process Forwarder with
//     the default PollInterval (100 ms) and BatchSize moves the event;
//   - outbox-poll10ms: the same with PollInterval 10 ms;
//   - direct: the row committed in its own transaction, then the event
//     published straight to the bus (what the outbox replaces: a crash in
//     between loses the event).
//
// go test -run '^$' -bench Upload -benchtime 2000x ./outbox/
func BenchmarkUpload(b *testing.B) {
	b.Run("outbox", func(b *testing.B) { benchUpload(b, photo.ModeOutbox, outbox.DefaultPollInterval) })
	b.Run("outbox-poll10ms", func(b *testing.B) { benchUpload(b, photo.ModeOutbox, 10*time.Millisecond) })
	b.Run("direct", func(b *testing.B) { benchUpload(b, photo.ModeDirect, 0) })
}

func benchUpload(b *testing.B, mode string, poll time.Duration) {
	ctx := context.Background()
	e := newEnv(b, nil, photo.Schemas())
	table := e.photos + "_up"
	require.NoError(b, photo.CreatePhotosTable(ctx, e.db, table))
	b.Cleanup(func() { _, _ = e.db.Exec(`DROP TABLE IF EXISTS "` + table + `"`) })
	ob, err := photo.NewUploads(photo.UploadsConfig{DB: e.db, Table: table, Outbox: e.ob})
	require.NoError(b, err)
	if mode == photo.ModeOutbox {
		e.forward(b, outbox.ForwarderConfig{PollInterval: poll})
	}

	var committed sync.Map // event id -> time.Time of commit
	sub, err := e.bus.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "bench", BlockTime: 50 * time.Millisecond})
	require.NoError(b, err)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := sub.Subscribe(sctx, photo.TypeUploaded)
	require.NoError(b, err)
	var mu sync.Mutex
	var lat []time.Duration
	go func() {
		for m := range ch {
			now := time.Now()
			m.Ack()
			for {
				if t, ok := committed.Load(m.UUID); ok {
					mu.Lock()
					lat = append(lat, now.Sub(t.(time.Time)))
					mu.Unlock()
					break
				}
				time.Sleep(10 * time.Microsecond) // the uploader stores its commit time right after Upload returns
			}
		}
	}()

	n := 0
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		n++
		u := photo.Uploaded{PhotoID: fmt.Sprintf("p%07d", i), OwnerID: "u1", Key: "originals/x.jpg", Filename: "x.jpg", ContentType: "image/jpeg", Size: 1}
		if mode == photo.ModeOutbox {
			msgID, err := ob.Upload(ctx, u)
			require.NoError(b, err)
			committed.Store(msgID, time.Now())
		} else {
			// The row first, in its own transaction; then the event.
			_, err = e.db.ExecContext(ctx, `INSERT INTO "`+table+`" (id, owner_id, key, filename, content_type, size, event_id) VALUES ($1,$2,$3,$4,$5,$6,'')`,
				u.PhotoID, u.OwnerID, u.Key, u.Filename, u.ContentType, u.Size)
			require.NoError(b, err)
			at := time.Now()
			msg, err := bus.NewMessage(ctx, u, bus.WithSubject(u.PhotoID))
			require.NoError(b, err)
			committed.Store(msg.UUID, at)
			require.NoError(b, e.bus.Publisher().Publish(photo.TypeUploaded, msg))
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		done := len(lat)
		mu.Unlock()
		if done >= n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("handler received %d of %d events in 60 s", done, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	b.ReportMetric(float64(n)/elapsed.Seconds(), "uploads/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	cancel()
	_ = sub.Close()
}
