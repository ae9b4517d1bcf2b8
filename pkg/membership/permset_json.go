package membership

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The JSON form of a PermissionSet, stable across versions (fields may be
// added, never renamed or removed):
//
//	{
//	  "org": "acme",                  // organization ID
//	  "user": "alice",                // user ID
//	  "status": "active",             // "", "active", "invited", "suspended" or "revoked"
//	  "active": true,                 // Active(): status active and inside the window at computed_at
//	  "window": {"from": null, "until": "2030-01-01T00:00:00Z"},  // the membership's window; null = open
//	  "roles": [                      // held roles, by ID; [] when not active
//	    {"id": 1, "name": "viewer", "system": true, "valid_until": null}
//	  ],
//	  "permissions": ["billing.view_invoice"],  // sorted; [] when not active
//	  "data_access": {                // per resource type; {} when not active
//	    "invoice": {"all": false, "ids": ["inv-1", "inv-2"]},  // ids sorted
//	    "customer": {"all": true, "ids": []}                   // all: every record; ids then []
//	  },
//	  "valid_until": null,            // ValidUntil(); null = no boundary ahead
//	  "computed_at": "2029-12-31T12:00:00Z"                    // ComputedAt()
//	}
//
// Times are RFC 3339 with nanoseconds where there are any, in UTC. The JSON
// carries what the checks need, not the provenance Explain reports: a set
// decoded from it answers Has, CanAccess and AccessibleIDs exactly as the
// original, but Explain cannot name roles or grants, nor report
// ReasonRoleExpired.

type setJSON struct {
	Org         string                `json:"org"`
	User        string                `json:"user"`
	Status      Status                `json:"status"`
	Active      bool                  `json:"active"`
	Window      windowJSON            `json:"window"`
	Roles       []roleJSON            `json:"roles"`
	Permissions []string              `json:"permissions"`
	DataAccess  map[string]accessJSON `json:"data_access"`
	ValidUntil  *time.Time            `json:"valid_until"`
	ComputedAt  time.Time             `json:"computed_at"`
}

type windowJSON struct {
	From  *time.Time `json:"from"`
	Until *time.Time `json:"until"`
}

type roleJSON struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	System     bool       `json:"system"`
	ValidUntil *time.Time `json:"valid_until"`
}

type accessJSON struct {
	All bool     `json:"all"`
	IDs []string `json:"ids"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func timeVal(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// MarshalJSON encodes the set in its stable JSON form, described field by
// field at the top of permset_json.go and in the package documentation. An
// inactive set encodes with empty roles, permissions and data_access. A nil
// set encodes as null.
func (s *PermissionSet) MarshalJSON() ([]byte, error) {
	if s == nil {
		return []byte("null"), nil
	}
	from, until := s.bounds()
	j := setJSON{
		Org:         s.org,
		User:        s.user,
		Status:      s.status,
		Active:      s.active,
		Window:      windowJSON{From: timePtr(from), Until: timePtr(until)},
		Roles:       []roleJSON{},
		Permissions: []string{},
		DataAccess:  map[string]accessJSON{},
		ValidUntil:  timePtr(s.validUntil),
		ComputedAt:  s.at.UTC(),
	}
	if s.active {
		for _, h := range s.roles {
			r := h.Value()
			j.Roles = append(j.Roles, roleJSON{ID: r.ID, Name: r.Name, System: r.System, ValidUntil: timePtr(r.ValidUntil)})
		}
		j.Permissions = append(j.Permissions, s.Permissions()...)
		for _, typ := range s.access.types() {
			all, ids := s.access.ids(typ)
			j.DataAccess[typ] = accessJSON{All: all, IDs: append([]string{}, ids...)}
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes the JSON form of MarshalJSON into s, which must be
// a new, zero PermissionSet (decoding into a set in use would break its
// immutability). The input is validated: IDs, codenames and resource types
// as the schema requires them, "active" consistent with status and window
// at computed_at, and nothing granted by an inactive set.
func (s *PermissionSet) UnmarshalJSON(data []byte) error {
	if s.org != "" || !s.at.IsZero() {
		return errors.New("membership: UnmarshalJSON into a PermissionSet in use")
	}
	var j setJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("membership: decode permission set: %w", err)
	}
	if err := checkMember(j.Org, j.User); err != nil {
		return err
	}
	if j.Status != StatusNone && !j.Status.Valid() {
		return invalid("status", string(j.Status), ErrInvalidStatus)
	}
	if j.ComputedAt.IsZero() {
		return errors.New("membership: decode permission set: computed_at is missing")
	}
	if err := checkWindow(j.Window.From, j.Window.Until); err != nil {
		return err
	}
	t := PermissionSet{
		org:        j.Org,
		user:       j.User,
		status:     canonicalStatus(string(j.Status)),
		at:         j.ComputedAt,
		validUntil: timeVal(j.ValidUntil),
	}
	from, until := timeVal(j.Window.From), timeVal(j.Window.Until)
	t.setWindow(from, until)
	if j.Status == StatusNone && (j.Window.From != nil || j.Window.Until != nil) {
		return errors.New("membership: decode permission set: a window without a membership")
	}
	t.active = t.status == StatusActive &&
		(from.IsZero() || !t.at.Before(from)) &&
		(until.IsZero() || t.at.Before(until))
	if t.active != j.Active {
		return errors.New("membership: decode permission set: active does not match status and window at computed_at")
	}
	if !t.active {
		if len(j.Roles) > 0 || len(j.Permissions) > 0 || len(j.DataAccess) > 0 {
			return errors.New("membership: decode permission set: an inactive set grants nothing")
		}
		*s = t
		return nil
	}
	var roles []Role
	for _, r := range j.Roles {
		if err := checkRoleName(r.Name); err != nil {
			return err
		}
		roles = append(roles, Role{ID: r.ID, Name: r.Name, System: r.System, ValidUntil: timeVal(r.ValidUntil)})
	}
	slices.SortFunc(roles, func(a, b Role) int { return cmp.Compare(a.ID, b.ID) })
	if err := checkCodenames(j.Permissions); err != nil {
		return err
	}
	perms := make(map[string]int32, len(j.Permissions))
	for _, c := range j.Permissions {
		perms[c] = -1
	}
	var access grantsBuilder
	for typ, a := range j.DataAccess {
		if !ValidResourceType(typ) {
			return invalid("resource_type", typ, ErrInvalidResourceType)
		}
		if a.All {
			access.add(typ, "", grantRef{role: -1})
		}
		for _, id := range a.IDs {
			if err := checkID("resource_id", id); err != nil {
				return err
			}
			access.add(typ, id, grantRef{role: -1})
		}
	}
	// Decoded codenames are looked up in the catalog, never added to it:
	// untrusted input must not grow a process-wide table.
	t.roles = internRoles(roles)
	t.perms, _ = makePermIndex(perms, false)
	t.access.own = access.pack() // unknown provenance: the set's own
	*s = t
	return nil
}
