package membership

import (
	"fmt"
	"time"
	"unique"
)

// Status is the status of a membership. The empty Status means there is no
// membership at all.
type Status string

// The membership statuses. Only an active membership inside its window
// grants anything.
const (
	StatusNone      Status = ""          // no membership
	StatusActive    Status = "active"    // grants its roles while inside its window
	StatusInvited   Status = "invited"   // invited, not yet accepted: grants nothing
	StatusSuspended Status = "suspended" // temporarily barred: grants nothing
	StatusRevoked   Status = "revoked"   // ended: grants nothing
)

// Valid reports whether s is one of the four statuses a membership can have
// (StatusNone is not one of them).
func (s Status) Valid() bool {
	switch s {
	case StatusActive, StatusInvited, StatusSuspended, StatusRevoked:
		return true
	}
	return false
}

// Role is a role held by a member: a system role (offered in every
// organization) or a role of the set's organization.
type Role struct {
	// ID is the role's orgperm.roles.id.
	ID int64
	// Name is the role's name, unique in its organization (or among system
	// roles).
	Name string
	// System reports a system role (orgperm.roles.org_id IS NULL).
	System bool
	// ValidUntil is when the member's assignment of the role ends
	// (exclusive); the zero time means it does not end.
	ValidUntil time.Time
}

// grantRef names where a permission or a data grant came from: a data-access
// grant ID (0 for a permission) and an index into the set's roles (or
// expired roles), -1 for a grant to the user or when unknown (a set decoded
// from JSON).
type grantRef struct {
	grant int64
	role  int32
}

// PermissionSet is the permission set of one user in one organization at
// one instant: what the seeds call the permission JSON. It holds the
// membership's status and window, the roles held, the union of their
// permission codenames and the data access per resource type, evaluated at
// ComputedAt, and it stays exactly right until ValidUntil unless the data
// is written.
//
// A PermissionSet is immutable: every accessor returns a copy, so it is safe
// to share between goroutines and to cache. Its checks are methods that are
// safe on a nil *PermissionSet, which denies everything. A set that is not
// Active grants nothing at all: no permission and no data access.
//
// Sets come from Store.Load and Store.LoadMany, or from json.Unmarshal of
// the documented JSON form (see MarshalJSON).
type PermissionSet struct {
	org, user  string
	status     Status // one of the Status constants, never a copy
	active     bool
	at         time.Time
	validUntil time.Time
	window     *window // nil: open at both ends

	// The parts below are hash-consed and shared between sets (see
	// permset_compact.go). A zero handle means none.
	roles  []unique.Handle[Role] // held at `at`, sorted by ID
	perms  unique.Handle[permIndex]
	access accessParts
	lapsed *lapsed // nil: no role assignment has ended
}

// window is a membership's validity window; a zero time is an open bound.
type window struct{ from, until time.Time }

// lapsed is what the roles whose assignment ended at or before ComputedAt
// would grant, for Explain's ReasonRoleExpired.
type lapsed struct {
	roles  []unique.Handle[Role] // sorted by ID
	perms  unique.Handle[permIndex]
	access unique.Handle[access]
}

// lapsedPerm returns the index in lapsed.roles of the ended role that
// would grant codename, if any.
func (s *PermissionSet) lapsedPerm(codename string) (int32, bool) {
	if s.lapsed == nil {
		return -1, false
	}
	return lookupPerm(s.lapsed.perms, codename)
}

// lapsedAccess returns the grant to an ended role that would cover record
// id of typ, if any.
func (s *PermissionSet) lapsedAccess(typ, id string) (grantRef, bool) {
	if s.lapsed == nil {
		return grantRef{}, false
	}
	return (&accessParts{roles: s.lapsed.access}).lookup(typ, id)
}

// bounds returns the membership's window.
func (s *PermissionSet) bounds() (from, until time.Time) {
	if s.window == nil {
		return time.Time{}, time.Time{}
	}
	return s.window.from, s.window.until
}

// setWindow records the window [from, until).
func (s *PermissionSet) setWindow(from, until time.Time) {
	if !from.IsZero() || !until.IsZero() {
		s.window = &window{from, until}
	}
}

// canonicalStatus returns the Status constant equal to st, so that a set
// keeps no copy of a status string; an unknown status is kept as it is.
func canonicalStatus(st string) Status {
	for _, c := range [...]Status{StatusActive, StatusInvited, StatusSuspended, StatusRevoked} {
		if string(c) == st {
			return c
		}
	}
	return Status(st)
}

// Org returns the organization ID of the set.
func (s *PermissionSet) Org() string {
	if s == nil {
		return ""
	}
	return s.org
}

// User returns the user ID of the set.
func (s *PermissionSet) User() string {
	if s == nil {
		return ""
	}
	return s.user
}

// Status returns the membership's status, StatusNone when there is no
// membership.
func (s *PermissionSet) Status() Status {
	if s == nil {
		return StatusNone
	}
	return s.status
}

// Window returns the membership's validity window [from, until); a zero
// time is an open bound.
func (s *PermissionSet) Window() (from, until time.Time) {
	if s == nil {
		return time.Time{}, time.Time{}
	}
	return s.bounds()
}

// Active reports whether the membership is active and inside its window at
// ComputedAt: status active, valid_from (inclusive) at or before it and
// valid_until (exclusive) after it. Only an active set grants anything.
func (s *PermissionSet) Active() bool { return s != nil && s.active }

// ComputedAt returns the instant the set was evaluated at: the at argument
// of Store.Load.
func (s *PermissionSet) ComputedAt() time.Time {
	if s == nil {
		return time.Time{}
	}
	return s.at
}

// ValidUntil returns the first instant after ComputedAt at which the set
// changes with no write at all: the membership's valid_from when it is
// still to come, its valid_until, or the end of a held role's assignment,
// whichever is first. The zero time means no such instant. The set is
// exactly right over [ComputedAt, ValidUntil) unless the data is written.
func (s *PermissionSet) ValidUntil() time.Time {
	if s == nil {
		return time.Time{}
	}
	return s.validUntil
}

// Roles returns the roles held at ComputedAt, sorted by ID: system roles and
// roles of the set's organization whose assignment has not ended. An
// inactive set holds none.
func (s *PermissionSet) Roles() []Role {
	if s == nil || !s.active {
		return nil
	}
	return roleValues(s.roles)
}

// roleValues returns the roles of hs in a fresh slice (nil if none).
func roleValues(hs []unique.Handle[Role]) []Role {
	if len(hs) == 0 {
		return nil
	}
	out := make([]Role, len(hs))
	for i, h := range hs {
		out[i] = h.Value()
	}
	return out
}

// Permissions returns the codenames granted by the held roles, sorted. An
// inactive set has none.
func (s *PermissionSet) Permissions() []string {
	if s == nil || !s.active || s.perms == (unique.Handle[permIndex]{}) {
		return nil
	}
	p := s.perms.Value()
	return p.names()
}

// ResourceTypes returns the resource types the set has any data access to,
// sorted.
func (s *PermissionSet) ResourceTypes() []string {
	if s == nil || !s.active {
		return nil
	}
	return s.access.types()
}

// Has reports whether the set grants the permission codename. It is one
// lookup in the process-wide codename catalog and a bit test, and does not
// allocate.
func (s *PermissionSet) Has(codename string) bool {
	if s == nil || !s.active || s.perms == (unique.Handle[permIndex]{}) {
		return false
	}
	p := s.perms.Value()
	return p.hasBit(codename)
}

// HasAny reports whether the set grants at least one of codenames. With no
// codenames it returns false.
func (s *PermissionSet) HasAny(codenames ...string) bool {
	for _, c := range codenames {
		if s.Has(c) {
			return true
		}
	}
	return false
}

// HasAll reports whether the set grants every one of codenames.
//
// With no codenames it returns false, not the vacuous true: an empty
// requirement is far more likely a bug (a list built at run time that came
// out empty) than an intent, and this package denies by default. To ask
// "is this an active member", use Active.
func (s *PermissionSet) HasAll(codenames ...string) bool {
	if len(codenames) == 0 {
		return false
	}
	for _, c := range codenames {
		if !s.Has(c) {
			return false
		}
	}
	return true
}

// CanAccess reports whether the set has data access to the record id of
// resourceType: a grant of that very record, or of all records of the type,
// to the user or to a held role, in the set's organization.
func (s *PermissionSet) CanAccess(resourceType, id string) bool {
	if s == nil || !s.active {
		return false
	}
	_, ok := s.access.lookup(resourceType, id)
	return ok
}

// AccessibleIDs returns the data access of the set to resourceType: all
// reports access to every record of the type (ids is then nil); otherwise
// ids lists the accessible record IDs, sorted, in a fresh slice the caller
// may keep, ready for `WHERE id = ANY($1)`. No access at all is (false, nil).
func (s *PermissionSet) AccessibleIDs(resourceType string) (all bool, ids []string) {
	if s == nil || !s.active {
		return false, nil
	}
	return s.access.ids(resourceType)
}

// Reason says why a Decision allowed or denied.
type Reason uint8

// The reasons of a Decision. The zero Reason is ReasonNotGranted, so a zero
// Decision denies.
const (
	// ReasonNotGranted: an active member, but no held role grants the
	// permission (or no grant covers the record).
	ReasonNotGranted Reason = iota
	// ReasonGranted: allowed; Decision names the role or grant.
	ReasonGranted
	// ReasonNotMember: the user has no membership in the organization (or
	// the set is nil).
	ReasonNotMember
	// ReasonInvited: the membership is invited, not yet active.
	ReasonInvited
	// ReasonSuspended: the membership is suspended.
	ReasonSuspended
	// ReasonRevoked: the membership is revoked.
	ReasonRevoked
	// ReasonNotYetValid: the membership is active but its valid_from is
	// still to come.
	ReasonNotYetValid
	// ReasonExpired: the membership is active but its valid_until has
	// passed.
	ReasonExpired
	// ReasonRoleExpired: a role whose assignment has ended would have
	// allowed it; Decision names that role.
	ReasonRoleExpired
	// ReasonNoRole: an active member who holds no role at all.
	ReasonNoRole
)

var reasonNames = [...]string{
	ReasonNotGranted:  "not_granted",
	ReasonGranted:     "granted",
	ReasonNotMember:   "not_member",
	ReasonInvited:     "invited",
	ReasonSuspended:   "suspended",
	ReasonRevoked:     "revoked",
	ReasonNotYetValid: "not_yet_valid",
	ReasonExpired:     "expired",
	ReasonRoleExpired: "role_expired",
	ReasonNoRole:      "no_role",
}

// String returns the reason in snake case ("role_expired"), a stable form
// fit for logs and metrics labels.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Decision is the answer of Explain and ExplainAccess: whether the check
// passes, why, and what allowed it (or, for ReasonRoleExpired, what would
// have).
type Decision struct {
	// Allowed is the answer of the matching check (Has or CanAccess).
	Allowed bool
	// Reason says why.
	Reason Reason
	// RoleID and RoleName name the role that allowed it (for a permission,
	// the held role with the lowest ID that grants it; for data access, the
	// role the grant was made to), or the expired role for
	// ReasonRoleExpired. Zero and empty for a grant to the user, and in a
	// set decoded from JSON, which does not record them.
	RoleID   int64
	RoleName string
	// GrantID is the orgperm.data_access.id of the grant that allowed (or
	// would have allowed) a data access; 0 for permissions and in a set
	// decoded from JSON.
	GrantID int64
	// Message is a one-line explanation for people.
	Message string
}

// inactiveReason says why an inactive set is inactive.
func (s *PermissionSet) inactiveReason() Reason {
	switch s.status {
	case StatusInvited:
		return ReasonInvited
	case StatusSuspended:
		return ReasonSuspended
	case StatusRevoked:
		return ReasonRevoked
	case StatusActive:
		if from, _ := s.bounds(); !from.IsZero() && s.at.Before(from) {
			return ReasonNotYetValid
		}
		return ReasonExpired
	}
	return ReasonNotMember
}

func (s *PermissionSet) denyInactive() Decision {
	if s == nil {
		return Decision{Reason: ReasonNotMember, Message: "no permission set"}
	}
	r := s.inactiveReason()
	var msg string
	switch r {
	case ReasonNotMember:
		msg = fmt.Sprintf("user %q is not a member of organization %q", s.user, s.org)
	case ReasonNotYetValid:
		msg = fmt.Sprintf("membership of user %q in organization %q starts at %s",
			s.user, s.org, s.window.from.UTC().Format(time.RFC3339Nano))
	case ReasonExpired:
		msg = fmt.Sprintf("membership of user %q in organization %q ended at %s",
			s.user, s.org, s.window.until.UTC().Format(time.RFC3339Nano))
	default:
		msg = fmt.Sprintf("membership of user %q in organization %q is %s", s.user, s.org, s.status)
	}
	return Decision{Reason: r, Message: msg}
}

func roleAt(roles []unique.Handle[Role], i int32) (int64, string) {
	if i < 0 || int(i) >= len(roles) {
		return 0, ""
	}
	r := roles[i].Value()
	return r.ID, r.Name
}

// lookupPerm returns the role index granting codename in p, if p grants it.
func lookupPerm(p unique.Handle[permIndex], codename string) (int32, bool) {
	if p == (unique.Handle[permIndex]{}) {
		return -1, false
	}
	v := p.Value()
	return v.has(codename)
}

// Explain answers Has(codename) and says why: the granting role (the held
// role with the lowest ID that grants it), or the reason for a denial, in
// this order: the membership (ReasonNotMember, ReasonInvited,
// ReasonSuspended, ReasonRevoked, ReasonNotYetValid, ReasonExpired), a role
// that would grant it but whose assignment has ended (ReasonRoleExpired), no
// role at all (ReasonNoRole), else ReasonNotGranted.
func (s *PermissionSet) Explain(codename string) Decision {
	if s == nil || !s.active {
		return s.denyInactive()
	}
	if i, ok := lookupPerm(s.perms, codename); ok {
		id, name := roleAt(s.roles, i)
		msg := fmt.Sprintf("%q granted by role %q", codename, name)
		if name == "" {
			msg = fmt.Sprintf("%q granted", codename)
		}
		return Decision{Allowed: true, Reason: ReasonGranted, RoleID: id, RoleName: name, Message: msg}
	}
	if i, ok := s.lapsedPerm(codename); ok {
		l := s.lapsed
		id, name := roleAt(l.roles, i)
		var ended time.Time
		if i >= 0 && int(i) < len(l.roles) {
			ended = l.roles[i].Value().ValidUntil
		}
		return Decision{Reason: ReasonRoleExpired, RoleID: id, RoleName: name,
			Message: fmt.Sprintf("%q would be granted by role %q, whose assignment ended at %s",
				codename, name, ended.UTC().Format(time.RFC3339Nano))}
	}
	if len(s.roles) == 0 {
		return Decision{Reason: ReasonNoRole,
			Message: fmt.Sprintf("user %q holds no role in organization %q", s.user, s.org)}
	}
	return Decision{Reason: ReasonNotGranted, Message: fmt.Sprintf("no held role grants %q", codename)}
}

// ExplainAccess answers CanAccess(resourceType, id) and says why: the grant
// that allowed it (a grant of that record is preferred to a grant of all
// records of the type, then the lowest grant ID), or the reason for a
// denial: the membership's, as for Explain, then ReasonRoleExpired when a
// grant to a role whose assignment has ended would have allowed it, else
// ReasonNotGranted.
func (s *PermissionSet) ExplainAccess(resourceType, id string) Decision {
	if s == nil || !s.active {
		return s.denyInactive()
	}
	if ref, ok := s.access.lookup(resourceType, id); ok {
		d := Decision{Allowed: true, Reason: ReasonGranted, GrantID: ref.grant}
		d.RoleID, d.RoleName = roleAt(s.roles, ref.role)
		if d.RoleName != "" {
			d.Message = fmt.Sprintf("%s %q granted by grant %d to role %q", resourceType, id, ref.grant, d.RoleName)
		} else {
			d.Message = fmt.Sprintf("%s %q granted by grant %d to the user", resourceType, id, ref.grant)
		}
		return d
	}
	if ref, ok := s.lapsedAccess(resourceType, id); ok {
		d := Decision{Reason: ReasonRoleExpired, GrantID: ref.grant}
		d.RoleID, d.RoleName = roleAt(s.lapsed.roles, ref.role)
		d.Message = fmt.Sprintf("%s %q would be granted by grant %d to role %q, whose assignment ended",
			resourceType, id, ref.grant, d.RoleName)
		return d
	}
	return Decision{Reason: ReasonNotGranted, Message: fmt.Sprintf("no grant covers %s %q", resourceType, id)}
}
