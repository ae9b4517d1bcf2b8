package localcache

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// hitCounter counts hits in padded stripes, one picked per goroutine.
//
// A counter that every hit writes is a cache line that every core writes:
// with two cores hitting, it moves between them on nearly every hit, and
// that alone doubled the cost of a hit at two threads (a per-shard counter
// does not help: both cores hit every shard). Go has no per-P or
// per-thread storage, so a stripe is chosen by the address of the calling
// goroutine's stack: goroutines running at the same time have stacks
// apart, so they write different stripes, and one goroutine writes the
// same stripe while its stack stays put. Two goroutines may share a
// stripe; that costs time, never a count.
type hitCounter struct {
	stripes []hitStripe
	mask    uintptr
}

type hitStripe struct {
	n atomic.Uint64
	_ [cacheLine - 8]byte
}

// stackShift drops the bits that vary with the depth of the frame in one
// goroutine's stack; a goroutine's first stack is 2 KiB, and the stacks
// of goroutines started one after the other are next to each other.
const stackShift = 11

func newHitCounter() hitCounter {
	n := 8
	for n < 4*runtime.GOMAXPROCS(0) {
		n *= 2
	}
	return hitCounter{stripes: make([]hitStripe, n), mask: uintptr(n - 1)}
}

// add counts one hit.
func (h *hitCounter) add() {
	var x byte
	// The address is only hashed, never dereferenced, and x does not
	// escape.
	i := (uintptr(unsafe.Pointer(&x)) >> stackShift) & h.mask
	h.stripes[i].n.Add(1)
}

// load returns the hits counted.
func (h *hitCounter) load() uint64 {
	var n uint64
	for i := range h.stripes {
		n += h.stripes[i].n.Load()
	}
	return n
}
