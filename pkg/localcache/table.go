package localcache

import "sync/atomic"

// bucketShift drops the hash bits that chose the shard (Cache.locate masks
// the low bits, at most log2(MaxShards) of them) before a table picks a
// bucket, so that every bucket of a shard is used.
const bucketShift = 16

// minBuckets is the size of an empty table.
const minBuckets = 16

// table holds a shard's entries by key hash, at most one entry per hash. A
// lookup reads it with atomic loads only: no lock, and no write to memory
// that another core reads. That is what lets two cores hit the same shard
// without handing its cache lines back and forth, which a read lock's
// reader count does on every hit. Every change is made under the shard's
// write lock.
//
// Buckets are chains linked through entry.next. A change publishes a fully
// built entry with one atomic store, and unlinking an entry leaves its own
// next pointer alone, so a lookup walking the chain meanwhile goes on
// through it. Sequential consistency of sync/atomic gives the ordering rule
// 1b of the package documentation needs: a lookup that begins after a
// removal returned cannot find the removed entry; one that overlaps it may
// (as one that took a read lock first would).
type table[V any] struct {
	cur atomic.Pointer[buckets[V]]
	n   int // entries; guarded by the shard's write lock
}

type buckets[V any] struct {
	heads []atomic.Pointer[entry[V]]
	mask  uint64
}

func newBuckets[V any](n int) *buckets[V] {
	return &buckets[V]{heads: make([]atomic.Pointer[entry[V]], n), mask: uint64(n - 1)}
}

func (b *buckets[V]) head(h uint64) *atomic.Pointer[entry[V]] {
	return &b.heads[(h>>bucketShift)&b.mask]
}

func (t *table[V]) init() { t.cur.Store(newBuckets[V](minBuckets)) }

// get returns the entry of hash h, or nil. It takes no lock.
func (t *table[V]) get(h uint64) *entry[V] {
	for e := t.cur.Load().head(h).Load(); e != nil; e = e.next.Load() {
		if e.hash == h {
			return e
		}
	}
	return nil
}

// insert adds e, whose hash no entry of t has. Write lock held.
func (t *table[V]) insert(e *entry[V]) {
	if t.n >= len(t.cur.Load().heads) {
		t.grow()
	}
	hd := t.cur.Load().head(e.hash)
	e.next.Store(hd.Load())
	hd.Store(e)
	t.n++
}

// delete unlinks e, which t holds. Write lock held.
func (t *table[V]) delete(e *entry[V]) {
	hd := t.cur.Load().head(e.hash)
	if p := hd.Load(); p == e {
		hd.Store(e.next.Load())
	} else {
		for p.next.Load() != e {
			p = p.next.Load()
		}
		p.next.Store(e.next.Load())
	}
	t.n--
}

// clear drops every entry. Write lock held. A lookup that loaded the old
// buckets before may still find an entry in them: it overlaps the clear.
func (t *table[V]) clear() {
	t.cur.Store(newBuckets[V](minBuckets))
	t.n = 0
}

// grow doubles the buckets, relinking every entry into the new ones, which
// are published at the end. Write lock held. A lookup walking an old chain
// meanwhile may be led into a new chain and miss its entry (a miss, which
// loads; never a wrong entry: a lookup compares the hash, and the caller
// the key). Chains stay acyclic: a moved entry links only to moved ones.
func (t *table[V]) grow() {
	old := t.cur.Load()
	nb := newBuckets[V](2 * len(old.heads))
	for i := range old.heads {
		for e := old.heads[i].Load(); e != nil; {
			next := e.next.Load()
			hd := nb.head(e.hash)
			e.next.Store(hd.Load())
			hd.Store(e)
			e = next
		}
	}
	t.cur.Store(nb)
}
