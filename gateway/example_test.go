package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/golang-jwt/jwt/v5"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/internal/rediskeys"
	"github.com/shared-infra/eventbus/internal/redistest"
)

func ExampleNewIngressPublisher() {
	pub, err := gateway.NewIngressPublisher(gateway.IngressPublisherConfig{
		URL:    "https://events.example.com" + gateway.EventsPath,
		Token:  os.Getenv("EVENTBUS_API_KEY"),
		Source: "/billing",
	}, watermill.NewSlogLogger(nil))
	if err != nil {
		panic(err)
	}
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"invoice":"i-7"}`))
	msg.Metadata.Set("datacontenttype", "application/json")
	msg.Metadata.Set("user", "alice") // addressed: alice's browsers get it
	// One binary-mode CloudEvent per message; the topic is the event type.
	if err := pub.Publish("invoice.paid", msg); err != nil {
		fmt.Println("not published:", err)
	}
}

// ExampleJWKSConfig verifies ES256 tokens with the keys of an identity
// provider's JWKS (here a test server holding one key). The docs'
// "Keys from a JWKS" section shows the same configuration.
func ExampleJWKSConfig() {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwk, _ := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{KID: "2026-12", ALG: jwkset.AlgES256},
	})
	set, _ := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(set) }))
	defer idp.Close()
	jwksURL := idp.URL // e.g. https://idp.example.com/.well-known/jwks.json

	auth, err := gateway.NewAuthenticator(gateway.AuthConfig{
		JWKS: gateway.JWKSConfig{
			URL:             jwksURL,
			RefreshInterval: time.Hour, // and at once on an unknown kid
			OnRefreshError:  func(err error) { fmt.Println(err) },
		},
		Issuer: "https://idp.example.com",
	})
	if err != nil {
		panic(err)
	}
	defer auth.Close() // stops the refreshes (Gateway.Close does it for gateway.New's)

	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"sub": "alice", "rooms": []string{"lobby"}, "iss": "https://idp.example.com",
		"exp": time.Now().Add(time.Hour).Unix(),
	})
	tok.Header["kid"] = "2026-12"
	signed, _ := tok.SignedString(key)
	p, err := auth.Verify(signed)
	fmt.Println(p.User, p.Rooms, err)
	// Output:
	// alice [lobby] <nil>
}

// A gateway in front of the bus, and a Go service publishing to it through
// NewIngressPublisher (docs/gateway.md: Setup, From Go).
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	logger := watermill.NopLogger{}
	prefix := fmt.Sprintf("example:gateway:%d:", time.Now().UnixNano())
	secret := []byte("an example HS256 secret, 32 bytes or more")
	serviceKey := "example-service-key-0123456789abcdef"
	apiKey := serviceKey
	healthHandler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	// A free loopback port (the docs say ":8080").
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()

	b, _ := bus.New(bus.Config{ServiceName: "gateway", RedisURL: redistest.URL(), StreamPrefix: prefix}, logger) // doc: b, _ := bus.New(bus.Config{ServiceName: "gateway", RedisURL: os.Getenv("REDIS_URL")}, logger)
	defer b.Close()
	defer func() { _ = rediskeys.DeletePrefix(context.Background(), b.Client(), prefix) }()
	g, err := gateway.New(b, gateway.Config{
		ListenAddr:     addr, // doc: ListenAddr: ":8080",
		Auth:           gateway.AuthConfig{HMACSecret: secret},
		Ingress:        gateway.IngressConfig{APIKeys: []string{serviceKey}},
		AllowedOrigins: []string{"https://app.example.com"},
	}, logger)
	if err != nil {
		panic(err)
	}
	g.Mount("GET /healthz", healthHandler)

	go func() {
		defer cancel() // ends ListenAndServe below
		<-g.Running()
		for { // until the listener is up
			if res, err := http.Get("http://" + addr + "/healthz"); err == nil {
				_ = res.Body.Close()
				break
			}
			time.Sleep(10 * time.Millisecond)
		}

		pub, err := gateway.NewIngressPublisher(gateway.IngressPublisherConfig{
			URL:    "http://" + addr + gateway.EventsPath, // doc: URL: "https://events.example.com/v1/events",
			Token:  apiKey,
			Source: "/billing",
		}, logger)
		if err != nil {
			panic(err)
		}
		msg := message.NewMessage(watermill.NewUUID(), []byte(`{"invoice":"i-7"}`))
		msg.Metadata.Set("user", "alice")
		err = pub.Publish("invoice.paid", msg)
		fmt.Println("published:", err)

		entries := b.Client().XRange(ctx, b.Config().StreamKey("invoice.paid"), "-", "+").Val()
		fmt.Println(len(entries), entries[0].Values[bus.AttrSource], entries[0].Values[bus.AttrUser])
	}()
	err = g.ListenAndServe(ctx)
	fmt.Println("stopped:", err)
	// Output:
	// published: <nil>
	// 1 /billing alice
	// stopped: <nil>
}
