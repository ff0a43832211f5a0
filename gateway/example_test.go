package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/golang-jwt/jwt/v5"

	"github.com/shared-infra/eventbus/gateway"
)

func ExampleSSEWriter() {
	rec := httptest.NewRecorder() // a real handler gets its http.ResponseWriter
	sse, err := gateway.NewSSEWriter(rec)
	if err != nil {
		panic(err)
	}
	_ = sse.WriteRetry(5000)
	_ = sse.WriteEvent("1712-0", "photo.uploaded", []byte("{\"id\":\"p1\"}\n{\"id\":\"p2\"}"))
	_ = sse.WriteComment("ping")
	fmt.Print(rec.Body.String())
	// Output:
	// retry: 5000
	//
	// id: 1712-0
	// event: photo.uploaded
	// data: {"id":"p1"}
	// data: {"id":"p2"}
	//
	// : ping
}

func ExampleResolveRooms() {
	// The principal comes from Authenticator.Authenticate; the requested
	// rooms from the SSE URL, e.g. /events?room=lobby&room=admin.
	p := gateway.Principal{User: "alice", Rooms: []string{"lobby", "photos"}}
	allowed, forbidden := gateway.ResolveRooms(p, []string{"lobby", "admin"})
	fmt.Println("allowed:", allowed, "forbidden:", forbidden)

	c := gateway.NewClient(p, allowed, 0)
	fmt.Println(c.Wants("lobby", "", false))  // a lobby event
	fmt.Println(c.Wants("photos", "", false)) // permitted, but not asked for
	fmt.Println(c.Wants("", "alice", false))  // addressed to alice
	fmt.Println(c.Wants("", "bob", false))    // addressed to bob
	fmt.Println(c.Wants("", "", true))        // broadcast
	// Output:
	// allowed: [lobby] forbidden: [admin]
	// true
	// false
	// true
	// false
	// true
}

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
