package gateway_test

import (
	"fmt"
	"net/http/httptest"
	"os"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

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
