package gateway_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/shared-infra/eventbus/gateway"
)

func TestResolveRooms(t *testing.T) {
	p := gateway.Principal{User: "alice", Rooms: []string{"a", "b"}}
	allowed, forbidden := gateway.ResolveRooms(p, []string{"b", "c", "a", "b", "", "c"})
	if !slices.Equal(allowed, []string{"b", "a"}) {
		t.Errorf("allowed = %q", allowed)
	}
	if !slices.Equal(forbidden, []string{"c", ""}) {
		t.Errorf("forbidden = %q", forbidden)
	}
	allowed, forbidden = gateway.ResolveRooms(p, nil)
	if allowed != nil || forbidden != nil {
		t.Errorf("nil request: %q, %q", allowed, forbidden)
	}
}

type addr struct {
	room, user string
	broadcast  bool
}

// dispatch plays the bus: it offers each event to every client that wants it.
func dispatch(clients []*gateway.Client, events map[string]addr) {
	for id, a := range events {
		for _, c := range clients {
			if c.Wants(a.room, a.user, a.broadcast) {
				c.Send(gateway.OutEvent{ID: id, Type: "test", Data: []byte(id)})
			}
		}
	}
}

func drain(c *gateway.Client) []string {
	var ids []string
	for {
		select {
		case ev := <-c.Events():
			ids = append(ids, ev.ID)
		default:
			slices.Sort(ids)
			return ids
		}
	}
}

// Two users, three rooms, a broadcast: each user gets its own events, its
// permitted rooms' events and the broadcast, and nothing else.
func TestClientAddressing(t *testing.T) {
	alice := gateway.Principal{User: "alice", Rooms: []string{"r1", "r2"}}
	bob := gateway.Principal{User: "bob", Rooms: []string{"r2", "r3"}}

	// alice asks for r3 as well, which she may not join.
	ca := gateway.NewClient(alice, []string{"r1", "r2", "r3"}, 16)
	// bob may join r2 but asks only for r3.
	cb := gateway.NewClient(bob, []string{"r3"}, 16)
	if !slices.Equal(ca.Rooms(), []string{"r1", "r2"}) || !slices.Equal(cb.Rooms(), []string{"r3"}) {
		t.Fatalf("rooms: alice %q, bob %q", ca.Rooms(), cb.Rooms())
	}

	events := map[string]addr{
		"e-r1":        {room: "r1"},
		"e-r2":        {room: "r2"},
		"e-r3":        {room: "r3"},
		"e-alice":     {user: "alice"},
		"e-bob":       {user: "bob"},
		"e-carol":     {user: "carol"},
		"e-bcast":     {broadcast: true},
		"e-r3+alice":  {room: "r3", user: "alice"},
		"e-unknown":   {room: "r9"},
		"e-nothing":   {},
		"e-bcast+bob": {user: "bob", broadcast: true},
	}
	dispatch([]*gateway.Client{ca, cb}, events)

	if got, want := drain(ca), []string{"e-alice", "e-bcast", "e-bcast+bob", "e-r1", "e-r2", "e-r3+alice"}; !slices.Equal(got, want) {
		t.Errorf("alice got %q, want %q", got, want)
	}
	if got, want := drain(cb), []string{"e-bcast", "e-bcast+bob", "e-bob", "e-r3", "e-r3+alice"}; !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q", got, want)
	}
}

func TestClientWantsEmptyUser(t *testing.T) {
	c := gateway.NewClient(gateway.Principal{}, nil, 1)
	if c.Wants("", "", false) {
		t.Error("anonymous client wants an event addressed to the empty user")
	}
	if !c.Wants("", "", true) {
		t.Error("anonymous client does not want a broadcast")
	}
}

func TestClientOverflow(t *testing.T) {
	// In a synctest bubble a Send that blocked would be reported as a
	// deadlock instead of hanging the test.
	synctest.Test(t, func(t *testing.T) {
		c := gateway.NewClient(gateway.Principal{User: "u"}, nil, 2)
		for i := range 2 {
			if !c.Send(gateway.OutEvent{ID: fmt.Sprint(i)}) {
				t.Fatalf("Send %d refused with room in the buffer", i)
			}
		}
		if c.Overflowed() {
			t.Fatal("overflowed too early")
		}
		if c.Send(gateway.OutEvent{ID: "2"}) {
			t.Fatal("Send accepted an event into a full buffer")
		}
		if !c.Overflowed() {
			t.Fatal("Overflowed() = false after a refused Send")
		}
		select {
		case <-c.Done():
		default:
			t.Fatal("client not closed after overflow")
		}
		if !errors.Is(c.Err(), gateway.ErrSlowClient) {
			t.Fatalf("Err() = %v, want ErrSlowClient", c.Err())
		}
		// Closed: Send keeps refusing without blocking, even with room.
		<-c.Events()
		if c.Send(gateway.OutEvent{ID: "3"}) {
			t.Fatal("Send accepted an event after Close")
		}
	})
}

func TestClientClose(t *testing.T) {
	c := gateway.NewClient(gateway.Principal{User: "u"}, nil, 4)
	if c.Err() != nil {
		t.Fatalf("Err() = %v before Close", c.Err())
	}
	first := errors.New("first")
	c.Close(first)
	c.Close(errors.New("second"))
	c.Close(nil)
	<-c.Done()
	if c.Err() != first {
		t.Fatalf("Err() = %v, want the first reason", c.Err())
	}
	if c.Send(gateway.OutEvent{}) || c.Overflowed() {
		t.Fatal("Send after Close: accepted, or marked as overflow")
	}

	c2 := gateway.NewClient(gateway.Principal{User: "u"}, nil, 4)
	c2.Close(nil)
	if !errors.Is(c2.Err(), gateway.ErrClientClosed) {
		t.Fatalf("Close(nil): Err() = %v, want ErrClientClosed", c2.Err())
	}
}

// TestClientConcurrent runs senders, a writer loop and closers together;
// run it with -race.
func TestClientConcurrent(t *testing.T) {
	c := gateway.NewClient(gateway.Principal{User: "u", Rooms: []string{"r"}}, []string{"r"}, 8)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				if c.Wants("r", "", false) {
					c.Send(gateway.OutEvent{ID: fmt.Sprint(g, "-", i)})
				}
			}
		})
	}
	wg.Go(func() { // writer loop
		for {
			select {
			case <-c.Events():
			case <-c.Done():
				return
			}
		}
	})
	for range 3 {
		wg.Go(func() { c.Close(nil) })
	}
	wg.Wait()
	if c.Err() == nil {
		t.Fatal("Err() = nil after Close")
	}
}
