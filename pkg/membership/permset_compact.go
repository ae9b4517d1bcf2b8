package membership

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unique"
	"unsafe"
)

// The compact form of a PermissionSet.
//
// A cached set must be small (tens of thousands of them per instance) and
// Has must be fast, so a set holds no maps and no copies of what other sets
// hold too:
//
//   - Codenames are interned into small integer IDs by one process-wide
//     catalog (codes), and a set's permissions are a bitset over those IDs:
//     Has is one catalog lookup and one bit test.
//   - What a set gets from its roles (its permissions, each held role, the
//     data access granted to those roles) is split into parts, each a
//     comparable value of strings and integers, hash-consed with package
//     unique: every set whose part is equal, provenance included, shares
//     one copy, and a part nobody holds any more is reclaimed by the
//     garbage collector. Members of one org with the same roles share all
//     of it. Sharing is exact by construction: equal values, compared
//     field by field.
//   - The data access granted to the user alone is the set's own, packed
//     with every resource type in one value (three strings).
//   - Grants are sorted, packed strings searched by bisection, not maps.

// maxCatalog bounds the codename catalog. The catalog only grows, with the
// distinct codenames of sets loaded from the database (the rows of
// orgperm.permissions); a set decoded from JSON never adds to it, so that
// untrusted input cannot fill it. Codenames outside it (the catalog full,
// or a decoded set's unknown codename) are kept in the set's permIndex.extra.
const maxCatalog = 1 << 16

// catalog interns codenames. Lookups are lock-free reads of an immutable
// snapshot; interning copies it under mu (rare: once per new codename).
type catalog struct {
	mu   sync.Mutex
	snap atomic.Pointer[catalogSnap]
	// memo remembers recent lookups, in slots picked by the address of
	// the caller's string: a check usually passes a string constant, so
	// the same address comes back and the lookup is one atomic load and
	// a short comparison instead of a hash and a map probe. The memo
	// holds its own copy of the codename and compares contents, never
	// addresses alone, so a caller's string whose bytes change under it
	// (an unsafe conversion of a reused buffer) cannot get another
	// codename's ID.
	memo [memoSlots]atomic.Pointer[memoEntry]
}

const memoSlots = 64

type memoEntry struct {
	name string // a copy
	id   uint32
}

// fastLookup is lookup through the memo.
func (c *catalog) fastLookup(codename string) (uint32, bool) {
	slot := &c.memo[uintptr(unsafe.Pointer(unsafe.StringData(codename)))>>3%memoSlots]
	if m := slot.Load(); m != nil && m.name == codename {
		return m.id, true
	}
	id, ok := c.lookup(codename)
	if ok && slot.Load() == nil {
		// Only an empty slot is filled: at most memoSlots allocations per
		// process, so that strings at ever new addresses (built per
		// request) never make Has allocate.
		slot.CompareAndSwap(nil, &memoEntry{name: strings.Clone(codename), id: id})
	}
	return id, ok
}

type catalogSnap struct {
	ids   map[string]uint32
	names []string // by ID
}

// codes is the process-wide codename catalog.
var codes catalog

// lookup returns the ID of codename, if it has one.
func (c *catalog) lookup(codename string) (uint32, bool) {
	snap := c.snap.Load()
	if snap == nil {
		return 0, false
	}
	id, ok := snap.ids[codename]
	return id, ok
}

// name returns the codename of id, which must have been returned by lookup
// or intern.
func (c *catalog) name(id uint32) string { return c.snap.Load().names[id] }

// intern gives an ID to every codename of names that has none, while the
// catalog has room.
func (c *catalog) intern(names []string) {
	missing := false
	for _, n := range names {
		if _, ok := c.lookup(n); !ok {
			missing = true
			break
		}
	}
	if !missing {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.snap.Load()
	snap := &catalogSnap{ids: make(map[string]uint32, len(names))}
	if old != nil {
		snap.ids = make(map[string]uint32, len(old.ids)+len(names))
		for k, v := range old.ids {
			snap.ids[k] = v
		}
		snap.names = old.names[:len(old.names):len(old.names)]
	}
	for _, n := range names {
		if _, ok := snap.ids[n]; ok || len(snap.names) >= maxCatalog {
			continue
		}
		n = strings.Clone(n) // keep no fill's row buffer alive
		snap.ids[n] = uint32(len(snap.names))
		snap.names = append(snap.names, n)
	}
	c.snap.Store(snap)
}

// noRole is the role index stored for a grant to the user, or when the
// granting role is unknown (a set decoded from JSON).
const noRole = 0xffff

// putRole appends role index i (-1 for none) as two bytes.
func putRole(b []byte, i int32) []byte {
	if i < 0 || i >= noRole {
		i = noRole
	}
	return binary.LittleEndian.AppendUint16(b, uint16(i))
}

// getRole reads the role index at b[0:2].
func getRole(b string) int32 {
	v := int32(b[0]) | int32(b[1])<<8
	if v == noRole {
		return -1
	}
	return v
}

// permIndex is the permissions of a set (or what its expired roles would
// grant), hash-consed: see the top of this file.
type permIndex struct {
	// bits has bit id%8 of byte id/8 set for each catalog ID granted.
	bits string
	// roles holds, for each set bit in ID order, two bytes: the index in
	// the set's roles (or expired roles) of the held role with the lowest
	// ID that grants it, 0xffff if unknown.
	roles string
	// extra holds the codenames granted that have no catalog ID, sorted,
	// each followed by a NUL byte (codenames never contain one), and
	// extraRoles their role indexes as in roles.
	extra, extraRoles string
}

// makePermIndex builds the hash-consed index of perms (codename -> role
// index). When intern is set (a set loaded from the database), codenames
// without an ID get one.
func makePermIndex(perms map[string]int32, intern bool) (unique.Handle[permIndex], bool) {
	if len(perms) == 0 {
		return unique.Handle[permIndex]{}, false
	}
	names := make([]string, 0, len(perms))
	for n := range perms {
		names = append(names, n)
	}
	if intern {
		codes.intern(names)
	}
	type idRole struct {
		id   uint32
		role int32
	}
	var ids []idRole
	var extra []string
	for _, n := range names {
		if id, ok := codes.lookup(n); ok {
			ids = append(ids, idRole{id, perms[n]})
		} else {
			extra = append(extra, n)
		}
	}
	var p permIndex
	if len(ids) > 0 {
		slices.SortFunc(ids, func(a, b idRole) int { return cmp.Compare(a.id, b.id) })
		bs := make([]byte, ids[len(ids)-1].id/8+1)
		roles := make([]byte, 0, 2*len(ids))
		for _, x := range ids {
			bs[x.id/8] |= 1 << (x.id % 8)
			roles = putRole(roles, x.role)
		}
		p.bits, p.roles = string(bs), string(roles)
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		var b strings.Builder
		roles := make([]byte, 0, 2*len(extra))
		for _, n := range extra {
			b.WriteString(n)
			b.WriteByte(0)
			roles = putRole(roles, perms[n])
		}
		p.extra, p.extraRoles = b.String(), string(roles)
	}
	return unique.Make(p), true
}

// has reports whether the index grants codename, and the role index that
// grants it (-1 if unknown). It does not allocate.
func (p *permIndex) has(codename string) (int32, bool) {
	if id, ok := codes.lookup(codename); ok {
		if i := id / 8; i < uint32(len(p.bits)) && p.bits[i]&(1<<(id%8)) != 0 {
			rank := 0
			for j := range i {
				rank += bits.OnesCount8(p.bits[j])
			}
			rank += bits.OnesCount8(p.bits[i] & (1<<(id%8) - 1))
			return getRole(p.roles[2*rank:]), true
		}
	}
	if p.extra == "" {
		return -1, false
	}
	rank := 0
	for rest := p.extra; rest != ""; rank++ {
		end := strings.IndexByte(rest, 0)
		if rest[:end] == codename {
			return getRole(p.extraRoles[2*rank:]), true
		}
		rest = rest[end+1:]
	}
	return -1, false
}

// hasBit is the fast path of Has: one catalog lookup and one bit test,
// falling back to has only for a set that holds codenames outside the
// catalog.
func (p *permIndex) hasBit(codename string) bool {
	if id, ok := codes.fastLookup(codename); ok {
		if i := id / 8; i < uint32(len(p.bits)) && p.bits[i]&(1<<(id%8)) != 0 {
			return true
		}
	}
	if p.extra == "" {
		return false
	}
	_, ok := p.has(codename)
	return ok
}

// names returns the codenames granted, sorted.
func (p *permIndex) names() []string {
	var out []string
	for i := 0; i < len(p.bits); i++ {
		for b := p.bits[i]; b != 0; b &= b - 1 {
			out = append(out, codes.name(uint32(i*8+bits.TrailingZeros8(b))))
		}
	}
	for rest := p.extra; rest != ""; {
		end := strings.IndexByte(rest, 0)
		out = append(out, rest[:end])
		rest = rest[end+1:]
	}
	slices.Sort(out)
	return out
}

// access is data access in one packed value: every grant is a key,
// "type\x00id" for a record and "type\x00" for all records of the type
// (resource types and IDs never contain a NUL byte, and IDs are never
// empty), so that sorting the keys as bytes sorts by type, then ID, with a
// type's all-records grant first.
type access struct {
	// keys holds the keys, sorted and concatenated; ends has 4 bytes per
	// key, its end offset in keys; refs has 10 bytes per key, the grant
	// ID (int64) and the role index (two bytes, as in permIndex.roles), or
	// 8 bytes per key, the grant ID alone, when no grant names a role (the
	// user's own grants).
	keys, ends, refs string
}

const refBytes = 10

// count returns the number of keys.
func (a *access) count() int { return len(a.ends) / 4 }

// key returns the type and ID ("" for all records) of the i-th key.
func (a *access) key(i int) (typ, id string) {
	start := uint32(0)
	if i > 0 {
		start = le32(a.ends[4*(i-1):])
	}
	k := a.keys[start:le32(a.ends[4*i:])]
	j := strings.IndexByte(k, 0)
	return k[:j], k[j+1:]
}

// ref returns the grant of the i-th key.
func (a *access) ref(i int) grantRef {
	if len(a.refs) == 8*a.count() {
		r := a.refs[8*i:]
		return grantRef{grant: int64(le32(r)) | int64(le32(r[4:]))<<32, role: -1}
	}
	r := a.refs[refBytes*i:]
	return grantRef{grant: int64(le32(r)) | int64(le32(r[4:]))<<32, role: getRole(r[8:])}
}

// le32 reads a little-endian uint32 at s[0:4].
func le32(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// search returns the index of the first key at or after (typ, id), and
// whether that key is (typ, id).
func (a *access) search(typ, id string) (int, bool) {
	lo, hi := 0, a.count()
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		t, i := a.key(m)
		c := strings.Compare(t, typ)
		if c == 0 {
			c = strings.Compare(i, id)
		}
		if c == 0 {
			return m, true
		}
		if c < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, false
}

// grant returns the grant of the key (typ, id); id "" is the all-records
// grant.
func (a *access) grant(typ, id string) (grantRef, bool) {
	if i, ok := a.search(typ, id); ok {
		return a.ref(i), true
	}
	return grantRef{}, false
}

// grantsBuilder collects grants while a set is built; pack keeps, for
// each key (a record of a type, or all records of it), the grant with the
// lowest ID. It is a slice sorted once, not a map: a fill adds a few
// dozen grants and packs them once.
type grantsBuilder []grantEntry

type grantEntry struct {
	typ string
	id  string // "" for all records (an ext_id is never empty)
	ref grantRef
}

// add records ref as a grant of record id of typ ("": all records).
func (b *grantsBuilder) add(typ, id string, ref grantRef) {
	*b = append(*b, grantEntry{typ: typ, id: id, ref: ref})
}

// pack packs the grants of b (and sorts and compacts b's elements in
// place).
func (b grantsBuilder) pack() access {
	if len(b) == 0 {
		return access{}
	}
	// By key, then by grant ID: the first of each key is the one kept.
	slices.SortFunc(b, func(x, y grantEntry) int {
		if c := strings.Compare(x.typ, y.typ); c != 0 {
			return c
		}
		if c := strings.Compare(x.id, y.id); c != 0 {
			return c
		}
		return cmp.Compare(x.ref.grant, y.ref.grant)
	})
	b = slices.CompactFunc(b, func(x, y grantEntry) bool { return x.typ == y.typ && x.id == y.id })
	roles, size, n := false, 0, len(b)
	for _, e := range b {
		roles = roles || e.ref.role >= 0
		size += len(e.typ) + 1 + len(e.id)
	}
	perRef := 8
	if roles {
		perRef = refBytes
	}
	blob := make([]byte, 0, size)
	meta := make([]byte, 0, 4*n+perRef*n) // ends, then refs: one allocation
	for _, e := range b {
		blob = append(append(append(blob, e.typ...), 0), e.id...)
		meta = binary.LittleEndian.AppendUint32(meta, uint32(len(blob)))
	}
	for _, e := range b {
		meta = binary.LittleEndian.AppendUint64(meta, uint64(e.ref.grant))
		if roles {
			meta = putRole(meta, e.ref.role)
		}
	}
	m := string(meta)
	return access{keys: string(blob), ends: m[:4*n], refs: m[4*n:]}
}

// intern packs the grants of b, hash-consed (a zero handle if none).
func (b grantsBuilder) intern() unique.Handle[access] {
	if len(b) == 0 {
		return unique.Handle[access]{}
	}
	return unique.Make(b.pack())
}

// accessParts are the data access of a set: what its roles grant (shared
// by every member holding the same roles) and what is granted to the user
// alone (its own).
type accessParts struct {
	roles unique.Handle[access]
	own   access
}

// parts returns the two parts, the zero access for none.
func (p *accessParts) parts() [2]access {
	var out [2]access
	if p.roles != (unique.Handle[access]{}) {
		out[0] = p.roles.Value()
	}
	out[1] = p.own
	return out
}

// lookup returns the grant covering record id of typ: of that record
// (lowest grant ID), else of all records of the type (lowest grant ID).
func (p *accessParts) lookup(typ, id string) (grantRef, bool) {
	parts := p.parts()
	for _, want := range [2]string{id, ""} {
		var best grantRef
		found := false
		for i := range parts {
			if r, ok := parts[i].grant(typ, want); ok && (!found || r.grant < best.grant) {
				best, found = r, true
			}
		}
		if found {
			return best, true
		}
	}
	return grantRef{}, false
}

// types returns the resource types with any grant, sorted.
func (p *accessParts) types() []string {
	var out []string
	for _, a := range p.parts() {
		for i := range a.count() {
			t, _ := a.key(i)
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ids returns whether typ is granted in full, else the IDs of typ
// granted, sorted and without duplicates.
func (p *accessParts) ids(typ string) (all bool, ids []string) {
	for _, a := range p.parts() {
		i, _ := a.search(typ, "")
		for ; i < a.count(); i++ {
			t, id := a.key(i)
			if t != typ {
				break
			}
			if id == "" {
				return true, nil
			}
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return false, slices.Compact(ids)
}

// internRoles hash-conses roles.
func internRoles(roles []Role) []unique.Handle[Role] {
	if len(roles) == 0 {
		return nil
	}
	out := make([]unique.Handle[Role], len(roles))
	for i, r := range roles {
		out[i] = unique.Make(r)
	}
	return out
}
