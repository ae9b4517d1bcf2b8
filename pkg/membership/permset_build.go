package membership

import (
	"encoding/binary"
	"time"
	"unique"
)

// build makes the permission set of (org, user) from one row of loadSQL, at
// the instant the row says.
func build(org, user string, r *rawSet) *PermissionSet {
	return buildWith(org, user, r, nil)
}

// buildWith is build for a row composed from the member's own rows and the
// role definitions d (see roledefs.go), when d is not nil: the row then
// carries no permission and no grant to a role, and the role parts are
// d's for the same held roles, or made once from d's rows and kept there.
func buildWith(org, user string, r *rawSet, d *orgRoles) *PermissionSet {
	r.sortRoles()
	at := r.at.UTC()
	s := &PermissionSet{org: org, user: user, at: at}
	next := func(t time.Time) {
		if t.After(at) && (s.validUntil.IsZero() || t.Before(s.validUntil)) {
			s.validUntil = t
		}
	}
	if r.status == nil {
		return s
	}
	s.status = canonicalStatus(*r.status)
	from, until := windowStart(r.from), windowEnd(r.until)
	s.setWindow(from, until)
	if !from.IsZero() && from != farFuture {
		next(from)
	}
	if !until.IsZero() {
		next(until)
	}
	s.active = s.status == StatusActive &&
		(from.IsZero() || !at.Before(from)) &&
		(until.IsZero() || at.Before(until))
	if !s.active {
		// Nothing held matters until the membership is active: at its
		// valid_from (already in validUntil) the set is loaded again.
		return s
	}

	// Roles: held when the assignment has no end or ends after at.
	var roles, expired []Role
	refs := make(map[int64]roleRef, len(r.roleIDs))
	for i, id := range r.roleIDs {
		role := Role{ID: id, Name: r.roleNames[i], System: r.roleSystem[i]}
		role.ValidUntil = windowEnd(r.roleUntil[i])
		if role.ValidUntil.IsZero() || role.ValidUntil.After(at) {
			refs[id] = roleRef{true, int32(len(roles))}
			roles = append(roles, role)
			if !role.ValidUntil.IsZero() {
				next(role.ValidUntil)
			}
		} else {
			refs[id] = roleRef{false, int32(len(expired))}
			expired = append(expired, role)
		}
	}

	var p roleParts
	var key string
	found := false
	if d != nil {
		key = heldKey(r.roleIDs, refs)
		p, found = d.parts(key)
	}
	if !found {
		if d != nil {
			d.addRoleRows(r)
		}
		p = makeRoleParts(r, refs)
		if d != nil {
			d.keepParts(key, p)
		}
	}

	// Data grants to the user: for each record (or all of a type), the
	// grant with the lowest ID.
	own := make(grantsBuilder, 0, len(r.grantType))
	for i, typ := range r.grantType {
		if r.grantRole[i] == nil {
			own.add(typ, r.grantRes[i], grantRef{grant: r.grantID[i], role: -1})
		}
	}

	s.roles = internRoles(roles)
	s.perms = p.perms
	s.access = accessParts{roles: p.grants, own: own.pack()}
	if len(expired) > 0 {
		s.lapsed = &lapsed{roles: internRoles(expired), perms: p.lapsedPerms, access: p.lapsedGrants}
	}
	return s
}

// roleRef is where a held role sits in a set: among its current roles or
// its expired ones, at index i (roles are by ID).
type roleRef struct {
	current bool
	i       int32
}

// roleParts is what a set gets from its held roles, hash-consed: it
// depends only on which roles are held and which of them are current
// (their order is by ID), and on their definitions.
type roleParts struct {
	perms, lapsedPerms   unique.Handle[permIndex]
	grants, lapsedGrants unique.Handle[access]
}

// heldKey names the held roles of a set and which are current: what
// roleParts depends on besides the definitions.
func heldKey(ids []int64, refs map[int64]roleRef) string {
	b := make([]byte, 0, 9*len(ids))
	for _, id := range ids {
		b = binary.LittleEndian.AppendUint64(b, uint64(id))
		if refs[id].current {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	return string(b)
}

// makeRoleParts makes the role parts of r's set from its rows.
func makeRoleParts(r *rawSet, refs map[int64]roleRef) roleParts {
	// Permissions: for each codename, the held role with the lowest ID
	// (roles are by ID, so the lowest index).
	perms := make(map[string]int32, len(r.permCode))
	var expiredPerms map[string]int32
	for i, code := range r.permCode {
		ref, ok := refs[r.permRole[i]]
		target := &perms
		switch {
		case !ok:
			continue
		case !ref.current:
			target = &expiredPerms
			if expiredPerms == nil {
				expiredPerms = make(map[string]int32)
			}
		}
		if cur, seen := (*target)[code]; !seen || ref.i < cur {
			(*target)[code] = ref.i
		}
	}

	// Data grants to roles: for each record (or all of a type), the grant
	// with the lowest ID.
	var roleGrants, expiredGrants grantsBuilder
	for i, typ := range r.grantType {
		rid := r.grantRole[i]
		if rid == nil {
			continue
		}
		rr, ok := refs[*rid]
		if !ok {
			continue
		}
		target := &roleGrants
		if !rr.current {
			target = &expiredGrants
		}
		target.add(typ, r.grantRes[i], grantRef{grant: r.grantID[i], role: rr.i})
	}

	var p roleParts
	p.perms, _ = makePermIndex(perms, true)
	p.grants = roleGrants.intern()
	p.lapsedPerms, _ = makePermIndex(expiredPerms, true)
	p.lapsedGrants = expiredGrants.intern()
	return p
}
