package gateway

import (
	"slices"
	"testing"
)

// The hub offers a batch without a broadcast only to the streams its
// users and rooms index, and each stream still gets exactly what
// Client.Wants says, in order; a broadcast reaches everyone; removing a
// stream leaves no index entry behind.
func TestHubDispatchUsesTheIndex(t *testing.T) {
	h := newHub(nil, "t$push", 0, DefaultClientBuffer, nil)
	alice := newClient(Principal{User: "alice", Rooms: []string{"r1"}}, []string{"r1"})
	bob := newClient(Principal{User: "bob", Rooms: []string{"r1", "r2"}}, []string{"r2"})
	carol := newClient(Principal{User: "carol"}, nil)
	queues := map[*client]*sendQueue{}
	for _, c := range []*client{alice, bob, carol} {
		queues[c] = newSendQueue(16)
		if !h.add(c, queues[c]) {
			t.Fatal("add refused")
		}
	}
	take := func(c *client) []string { return msgs(queues[c].take(nil)) }

	h.dispatch(testFrames(
		[3]string{"to-alice", "", "alice"},
		[3]string{"room-r2", "r2", ""},
		[3]string{"dave-in-r1", "r1", "dave"},
		[3]string{"to-nobody", "r9", "zed"},
	))
	if got, want := take(alice), []string{"to-alice", "dave-in-r1"}; !slices.Equal(got, want) {
		t.Errorf("alice got %q, want %q", got, want)
	}
	if got, want := take(bob), []string{"room-r2"}; !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q (bob asked for r2 only)", got, want)
	}
	if got := take(carol); len(got) != 0 {
		t.Errorf("carol got %q, want nothing", got)
	}
	if len(h.targets) != 0 {
		t.Errorf("scratch set not cleared: %d", len(h.targets))
	}

	h.dispatch(testFrames([3]string{"to-carol", "", "carol"}, [3]string{"everyone", "", ""}))
	for c, want := range map[*client][]string{alice: {"everyone"}, bob: {"everyone"}, carol: {"to-carol", "everyone"}} {
		if got := take(c); !slices.Equal(got, want) {
			t.Errorf("%s got %q, want %q", c.principal.User, got, want)
		}
	}

	for _, c := range []*client{alice, bob, carol} {
		h.remove(c)
	}
	h.remove(alice) // twice: nothing happens
	if len(h.clients)+len(h.byUser)+len(h.byRoom) != 0 {
		t.Errorf("left after remove: %d clients, %d users, %d rooms", len(h.clients), len(h.byUser), len(h.byRoom))
	}
}
