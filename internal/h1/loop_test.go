package h1

import (
	"testing"

	"golang.org/x/sys/unix"
)

type events []uint32

func (e *events) event(ev uint32) { *e = append(*e, ev) }

// An event reported for a descriptor that is closed, and whose number is
// reused, before the event is handled never reaches the new owner: a
// hang-up meant for an old upstream connection must not end a new one.
func TestStaleEventsAreDropped(t *testing.T) {
	l, err := newLoop(&Engine{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.ep.Close()
	defer unix.Close(l.wakefd)
	pair := func() [2]int {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fds
	}
	old := pair()
	var oldEvents, newEvents events
	if err := l.register(old[0], &oldEvents); err != nil {
		t.Fatal(err)
	}
	unix.Close(old[1]) // the peer hangs up: a hang-up event for old[0]
	n, err := unix.EpollWait(l.epfd, l.events, 1000)
	if err != nil || n != 1 {
		t.Fatalf("epoll_wait: %d %v", n, err)
	}
	stale := l.events[0]
	// In the same batch, old[0] is closed and its number taken again.
	l.forget(old[0])
	unix.Close(old[0])
	fresh := pair()
	defer unix.Close(fresh[0])
	defer unix.Close(fresh[1])
	if fresh[0] != old[0] {
		t.Skipf("descriptor %d not reused (got %d)", old[0], fresh[0])
	}
	if err := l.register(fresh[0], &newEvents); err != nil {
		t.Fatal(err)
	}
	l.dispatch(&stale)
	if len(newEvents) != 0 || len(oldEvents) != 0 {
		t.Fatalf("the stale event reached a connection: new %v, old %v", newEvents, oldEvents)
	}
	// The new descriptor's own events do arrive.
	n, err = unix.EpollWait(l.epfd, l.events, 1000)
	if err != nil || n != 1 {
		t.Fatalf("epoll_wait: %d %v", n, err)
	}
	l.dispatch(&l.events[0])
	if len(newEvents) != 1 || newEvents[0]&unix.EPOLLOUT == 0 {
		t.Fatalf("new descriptor's events: %v", newEvents)
	}
}
