package bus

import (
	"testing"

	"github.com/redis/go-redis/v9"
)

// A closed subscriber is forgotten by its Bus; Bus.Close still closes the rest.
func TestBusForgetsClosedSubscribers(t *testing.T) {
	// No command is sent: NewSubscriber and Close of an idle subscriber do no I/O.
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	b, err := New(Config{ServiceName: "t", Client: client}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var subs []*Subscriber
	for range 3 {
		s, err := b.NewSubscriber(SubscriberConfig{})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	if err := subs[1].Close(); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	n := len(b.subs)
	b.mu.Unlock()
	if n != 2 {
		t.Fatalf("bus holds %d subscribers after one of 3 closed, want 2", n)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for i, s := range subs {
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if !closed {
			t.Errorf("subscriber %d not closed by Bus.Close", i)
		}
	}
	if len(b.subs) != 0 {
		t.Errorf("bus holds %d subscribers after Close", len(b.subs))
	}
}
