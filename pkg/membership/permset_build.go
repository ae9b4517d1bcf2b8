package membership

import "time"

// build makes the permission set of (org, user) from one row of loadSQL, at
// the instant the row says.
func build(org, user string, r *rawSet) *PermissionSet {
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
	type roleRef struct {
		current bool
		i       int32
	}
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

	// Data grants: for each record (or all of a type), the grant with the
	// lowest ID.
	roleGrants, ownGrants, expiredGrants := grantsBuilder{}, grantsBuilder{}, grantsBuilder{}
	for i, typ := range r.grantType {
		ref := grantRef{grant: r.grantID[i], role: -1}
		target := ownGrants
		if rid := r.grantRole[i]; rid != nil {
			rr, ok := refs[*rid]
			if !ok {
				continue
			}
			ref.role = rr.i
			target = roleGrants
			if !rr.current {
				target = expiredGrants
			}
		}
		target.add(typ, r.grantRes[i], ref)
	}

	s.roles = internRoles(roles)
	s.perms, _ = makePermIndex(perms, true)
	s.access = accessParts{roles: roleGrants.intern(), own: ownGrants.pack()}
	if len(expired) > 0 {
		s.lapsed = &lapsed{roles: internRoles(expired), access: expiredGrants.intern()}
		s.lapsed.perms, _ = makePermIndex(expiredPerms, true)
	}
	return s
}
