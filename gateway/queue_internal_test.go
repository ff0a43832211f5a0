package gateway

import (
	"slices"
	"testing"
)

func testFrames(addr ...[3]string) []pushFrame {
	out := make([]pushFrame, len(addr))
	for i, a := range addr {
		out[i] = pushFrame{
			frame:     &frame{id: streamID{ms: uint64(i + 1)}, msg: []byte(a[0])},
			room:      a[1],
			user:      a[2],
			broadcast: a[1] == "" && a[2] == "",
		}
	}
	return out
}

func msgs(fs []*frame) []string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f.msg))
	}
	return out
}

// The queue keeps only what the client wants, in order; take empties it and
// reuses the slice it is given.
func TestSendQueueOrderAndFilter(t *testing.T) {
	c := newClient(Principal{User: "alice", Rooms: []string{"r1"}}, []string{"r1"})
	q := newSendQueue(8)
	if !q.push(c, testFrames([3]string{"b1", "", ""}, [3]string{"bob", "", "bob"}, [3]string{"r1", "r1", ""}, [3]string{"r2", "r2", ""})) {
		t.Fatal("push refused with room in the queue")
	}
	if !q.push(c, testFrames([3]string{"alice", "", "alice"})) {
		t.Fatal("push refused with room in the queue")
	}
	select {
	case <-q.ready:
	default:
		t.Fatal("no wake-up after push")
	}
	got := q.take(nil)
	if want := []string{"b1", "r1", "alice"}; !slices.Equal(msgs(got), want) {
		t.Fatalf("take = %q, want %q", msgs(got), want)
	}
	if q.len() != 0 {
		t.Fatalf("len after take = %d", q.len())
	}
	if !q.push(c, testFrames([3]string{"bob", "", "bob"})) {
		t.Fatal("push refused")
	}
	select {
	case <-q.ready:
		t.Fatal("wake-up for a batch the client does not want")
	default:
	}
	q.take(got)
	if slices.ContainsFunc(got[:cap(got)], func(f *frame) bool { return f != nil }) {
		t.Error("take kept references to frames already written")
	}
}

// A push that would take the queue over its limit queues nothing of its
// batch and says so; what was queued before stays.
func TestSendQueueLimit(t *testing.T) {
	c := newClient(Principal{User: "u"}, nil)
	q := newSendQueue(3)
	if !q.push(c, testFrames([3]string{"1", "", ""}, [3]string{"2", "", ""})) {
		t.Fatal("push refused within the limit")
	}
	if q.push(c, testFrames([3]string{"3", "", ""}, [3]string{"4", "", ""})) {
		t.Fatal("push accepted beyond the limit")
	}
	if got, want := msgs(q.take(nil)), []string{"1", "2"}; !slices.Equal(got, want) {
		t.Fatalf("queued %q, want %q", got, want)
	}
	if !q.push(c, testFrames([3]string{"5", "", ""}, [3]string{"6", "", ""}, [3]string{"7", "", ""})) {
		t.Fatal("push of exactly the limit refused")
	}
}
