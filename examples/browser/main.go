// Command browser runs the HTTP gateway on a bus and serves a page that
// shows, with EventSource, the events addressed to a demo user.
//
//	go run ./examples/browser            # embedded Redis (miniredis)
//	REDIS_URL=redis://127.0.0.1:6379/0 go run ./examples/browser
//
// It prints a development JWT signed with a random HS256 secret, the page's
// URL with that token, and an API key for POSTing events with curl. See
// README.md next to this file.
package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/alicebob/miniredis/v2"
	"github.com/golang-jwt/jwt/v5"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
)

//go:embed index.html
var page []byte

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	every := flag.Duration("every", 2*time.Second, "how often demo events are published")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *every); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, addr string, every time.Duration) error {
	logger := watermill.NewSlogLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))

	redisURL := os.Getenv("REDIS_URL")
	if redisURL == "" {
		mr, err := miniredis.Run()
		if err != nil {
			return fmt.Errorf("embedded redis: %w", err)
		}
		defer mr.Close()
		redisURL = "redis://" + mr.Addr() + "/0"
		fmt.Println("Redis:   embedded (miniredis); set REDIS_URL to use a real one")
	} else {
		fmt.Println("Redis:  ", bus.RedactURL(redisURL))
	}
	b, err := bus.New(bus.Config{ServiceName: "browser-example", RedisURL: redisURL, StreamPrefix: "example:"}, logger)
	if err != nil {
		return err
	}
	defer b.Close()

	secret := randomBytes(32)
	apiKey := "dev-" + hex.EncodeToString(randomBytes(16))
	g, err := gateway.New(b, gateway.Config{
		ListenAddr: addr,
		Auth:       gateway.AuthConfig{HMACSecret: secret},
		Ingress:    gateway.IngressConfig{APIKeys: []string{apiKey}},
	}, logger)
	if err != nil {
		return err
	}
	g.Mount("GET /{$}", http.HandlerFunc(servePage))

	token, err := devToken(secret, "alice", []string{"lobby", "photos"})
	if err != nil {
		return err
	}
	fmt.Println("Secret: ", hex.EncodeToString(secret), "(HS256, random for this run)")
	fmt.Println("JWT:    ", token)
	fmt.Println("API key:", apiKey)
	fmt.Printf("Open:    http://%s/?rooms=lobby,photos#token=%s\n", addr, token)
	fmt.Printf("Publish: curl -i -X POST http://%s/v1/events -H 'Authorization: Bearer %s' "+
		"-H 'Content-Type: application/cloudevents+json' "+
		"-d '{\"specversion\":\"1.0\",\"id\":\"'$(date +%%s%%N)'\",\"type\":\"chat.message\",\"source\":\"curl\",\"room\":\"lobby\",\"data\":{\"text\":\"hi\"}}'\n",
		addr, apiKey)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	go publishDemo(ctx, b, every)
	if err := g.Serve(ctx, ln); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func servePage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer") // the URL may hold a token
	_, _ = w.Write(page)
}

// devToken signs a one-hour HS256 token for sub with the given rooms.
func devToken(secret []byte, sub string, rooms []string) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":   sub,
		"rooms": rooms,
		"exp":   time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)
}

// publishDemo publishes a few events now and then: to a room alice is in,
// to alice, to everyone, and to a room she is not in (which she never sees).
func publishDemo(ctx context.Context, b *bus.Bus, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	pub := b.Publisher()
	for i := 1; ; i++ {
		for _, e := range []struct {
			typ  string
			data any
			opt  bus.Option
		}{
			{"chat.message", map[string]any{"n": i, "text": "hello lobby"}, bus.WithRoom("lobby")},
			{"photo.uploaded", map[string]any{"n": i, "photo": fmt.Sprintf("p-%d", i)}, bus.WithRoom("photos")},
			{"user.notified", map[string]any{"n": i, "text": "just for alice"}, bus.WithUser("alice")},
			{"system.notice", map[string]any{"n": i, "text": "for everyone"}, bus.WithBroadcast()},
			{"chat.message", map[string]any{"n": i, "text": "secret room"}, bus.WithRoom("secret")},
		} {
			if _, err := bus.Publish(ctx, pub, e.typ, e.data, e.opt); err != nil && ctx.Err() == nil {
				log.Printf("publish %s: %v", e.typ, err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return b
}
