package gateway

import (
	"errors"
	"slices"
	"sync"
	"testing"
)

func TestResolveRooms(t *testing.T) {
	p := Principal{User: "alice", Rooms: []string{"a", "b"}}
	allowed, forbidden := resolveRooms(p, []string{"b", "c", "a", "b", "", "c"})
	if !slices.Equal(allowed, []string{"b", "a"}) {
		t.Errorf("allowed = %q", allowed)
	}
	if !slices.Equal(forbidden, []string{"c", ""}) {
		t.Errorf("forbidden = %q", forbidden)
	}
	allowed, forbidden = resolveRooms(p, nil)
	if allowed != nil || forbidden != nil {
		t.Errorf("nil request: %q, %q", allowed, forbidden)
	}
}

type addr struct {
	room, user string
	broadcast  bool
}

// wanted returns, sorted, the ids of the events c wants.
func wanted(c *client, events map[string]addr) []string {
	var ids []string
	for id, a := range events {
		if c.Wants(a.room, a.user, a.broadcast) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Two users, three rooms, a broadcast: each user gets its own events, its
// permitted rooms' events and the broadcast, and nothing else.
func TestClientAddressing(t *testing.T) {
	alice := Principal{User: "alice", Rooms: []string{"r1", "r2"}}
	bob := Principal{User: "bob", Rooms: []string{"r2", "r3"}}

	// alice asks for r3 as well, which she may not join.
	ca := newClient(alice, []string{"r1", "r2", "r3"})
	// bob may join r2 but asks only for r3.
	cb := newClient(bob, []string{"r3"})
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
	if got, want := wanted(ca, events), []string{"e-alice", "e-bcast", "e-bcast+bob", "e-r1", "e-r2", "e-r3+alice"}; !slices.Equal(got, want) {
		t.Errorf("alice got %q, want %q", got, want)
	}
	if got, want := wanted(cb, events), []string{"e-bcast", "e-bcast+bob", "e-bob", "e-r3", "e-r3+alice"}; !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q", got, want)
	}
}

func TestClientWantsEmptyUser(t *testing.T) {
	c := newClient(Principal{}, nil)
	if c.Wants("", "", false) {
		t.Error("anonymous client wants an event addressed to the empty user")
	}
	if !c.Wants("", "", true) {
		t.Error("anonymous client does not want a broadcast")
	}
}

func TestClientOverflow(t *testing.T) {
	c := newClient(Principal{User: "u"}, nil)
	c.overflow()
	select {
	case <-c.Done():
	default:
		t.Fatal("client not closed after overflow")
	}
	if !errors.Is(c.Err(), errSlowClient) {
		t.Fatalf("Err() = %v, want errSlowClient", c.Err())
	}
}

func TestClientClose(t *testing.T) {
	c := newClient(Principal{User: "u"}, nil)
	if c.Err() != nil {
		t.Fatalf("Err() = %v before Close", c.Err())
	}
	first := errors.New("first")
	c.Close(first)
	c.Close(errors.New("second"))
	c.Close(nil)
	c.overflow()
	<-c.Done()
	if c.Err() != first {
		t.Fatalf("Err() = %v, want the first reason", c.Err())
	}

	c2 := newClient(Principal{User: "u"}, nil)
	c2.Close(nil)
	if !errors.Is(c2.Err(), errClientClosed) {
		t.Fatalf("Close(nil): Err() = %v, want errClientClosed", c2.Err())
	}
}

// TestClientConcurrent runs matchers and closers together; run it with
// -race.
func TestClientConcurrent(t *testing.T) {
	c := newClient(Principal{User: "u", Rooms: []string{"r"}}, []string{"r"})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				if !c.Wants("r", "", false) {
					t.Error("client stopped wanting its room")
					return
				}
			}
		})
	}
	for range 3 {
		wg.Go(func() { c.Close(nil) })
		wg.Go(c.overflow)
	}
	wg.Wait()
	if c.Err() == nil {
		t.Fatal("Err() = nil after Close")
	}
}
