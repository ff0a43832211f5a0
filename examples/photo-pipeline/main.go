// Command photo-pipeline runs the photo pipeline as separate services would,
// each with its own bus (its own Redis connection) and router:
//
//	api       stores each uploaded file and publishes photo.uploaded
//	worker    photo.RegisterWorker: thumbnails, then photo.processing.completed or .failed
//	notifier  photo.RegisterNotifier: a photo.notification addressed to the owner
//	browser   stands in for the gateway: prints what each user is told
//
// It uses the Redis at REDIS_URL, or starts an embedded one when REDIS_URL is
// unset, and exits once every upload has been answered.
package main

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/photo"
	"github.com/shared-infra/eventbus/router"
)

func main() {
	url := os.Getenv("REDIS_URL")
	if url == "" {
		mr := must(miniredis.Run())
		defer mr.Close()
		url = "redis://" + mr.Addr()
	}
	// A fresh prefix per run: on a shared Redis, runs never see each other's events.
	// The streams are deleted at the end.
	prefix := fmt.Sprintf("examples:photos-%d:", time.Now().UnixNano())
	dir := must(os.MkdirTemp("", "photos-"))
	defer os.RemoveAll(dir)
	store := must(photo.NewDiskStore(dir)) // shared by api and worker, like a bucket
	ctx := context.Background()

	// service starts one service: its own bus and router, photo schemas checked.
	var routers []*router.Router
	service := func(name string, register func(*router.Router) error) *router.Router {
		b := must(bus.New(bus.Config{ServiceName: name, RedisURL: url, StreamPrefix: prefix}, nil))
		check(photo.RegisterSchemas(ctx, b)) // at every start: the same schemas stay one version
		r := must(router.New(b, router.Config{}, nil))
		check(register(r))
		go func() { check(r.Run(ctx)) }()
		<-r.Running()
		routers = append(routers, r)
		return r
	}
	service("worker", func(r *router.Router) error {
		return photo.RegisterWorker(r, photo.WorkerConfig{Store: store}, router.WithConcurrency(2))
	})
	service("notifier", func(r *router.Router) error { return photo.RegisterNotifier(r) })
	told := make(chan string, 16)
	service("browser", func(r *router.Router) error {
		return router.Handle(r, "push", photo.TypeNotification, func(ctx context.Context, ev bus.Event[photo.Notification]) error {
			told <- fmt.Sprintf("browser: to %-5s  %s: %s", ev.User, ev.Data.PhotoID, ev.Data.Message)
			return nil
		})
	})
	api := service("api", func(*router.Router) error { return nil }) // publishes only

	uploads := []struct {
		owner, name string
		data        []byte
	}{
		{"alice", "beach.jpg", image(photo.FormatJPEG, 1200, 800)},
		{"bob", "portrait.png", image(photo.FormatPNG, 600, 900)},
		{"alice", "party.gif", image(photo.FormatGIF, 480, 360)},
		{"bob", "notes.jpg", []byte("not a picture, just notes")},
	}
	start := time.Now()
	for i, u := range uploads {
		id := fmt.Sprintf("p%d", i+1)
		key := "originals/" + id + u.name[strings.LastIndexByte(u.name, '.'):]
		check(store.Put(ctx, key, bytes.NewReader(u.data)))
		must(bus.Publish(ctx, api.Publisher(), photo.TypeUploaded, photo.Uploaded{
			PhotoID: id, OwnerID: u.owner, Key: key, Filename: u.name, ContentType: "application/octet-stream", Size: int64(len(u.data)),
		}, bus.WithSubject(id)))
		fmt.Printf("api:     %s uploaded %s as %s (%d bytes)\n", u.owner, u.name, id, len(u.data))
	}
	for range uploads {
		select {
		case line := <-told:
			fmt.Println(line)
		case <-time.After(30 * time.Second):
			log.Fatal("timed out waiting for the notifications")
		}
	}
	fmt.Printf("done: %d uploads answered in %s\n", len(uploads), time.Since(start).Round(time.Millisecond))
	for _, r := range routers {
		check(r.Close())
	}
	// Leave nothing behind in your Redis: delete this run's streams.
	rdb := api.Bus().Client()
	for keys := rdb.Scan(ctx, 0, prefix+"*", 100).Iterator(); keys.Next(ctx); {
		check(rdb.Unlink(ctx, keys.Val()).Err())
	}
	for _, r := range routers {
		check(r.Bus().Close())
	}
}

func image(format string, w, h int) []byte {
	return must(photo.GenerateTestImage(format, w, h, int64(w)))
}

func must[T any](v T, err error) T { check(err); return v }

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
