package membership

import (
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits of the schema, mirrored here so that bad input is rejected before
// any SQL runs.
const (
	maxIDBytes           = 128 // orgperm.ext_id
	maxCodenameBytes     = 100 // permissions_codename_format
	maxResourceTypeBytes = 100 // data_access_resource_type_format
	maxRoleNameBytes     = 100 // roles_name_valid
)

// validText reports whether s is 1 to max bytes of valid UTF-8 without
// control characters. PostgreSQL's [[:cntrl:]] depends on the database's
// locale; Go rejects every Unicode control character (Cc), which is at least
// as strict in the C locale, and a database that is stricter still is
// caught by the constraint (see dbError).
func validText(s string, max int) bool {
	if len(s) == 0 || len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// ValidID reports whether id is a valid organization, user or resource ID:
// 1 to 128 bytes of UTF-8 without control characters (the orgperm.ext_id
// domain).
func ValidID(id string) bool { return validText(id, maxIDBytes) }

// ValidCodename reports whether c is a valid permission codename:
// ^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$, at most 100 bytes.
func ValidCodename(c string) bool {
	if len(c) == 0 || len(c) > maxCodenameBytes {
		return false
	}
	dot := -1
	for i := 0; i < len(c); i++ {
		b := c[i]
		switch {
		case b >= 'a' && b <= 'z':
		case (b >= '0' && b <= '9') || b == '_':
			if i == 0 || i == dot+1 {
				return false
			}
		case b == '.':
			if dot >= 0 || i == 0 {
				return false
			}
			dot = i
		default:
			return false
		}
	}
	return dot > 0 && dot < len(c)-1
}

// ValidResourceType reports whether t is a valid data-access resource type:
// ^[a-z][a-z0-9_.]*$, at most 100 bytes.
func ValidResourceType(t string) bool {
	if len(t) == 0 || len(t) > maxResourceTypeBytes || t[0] < 'a' || t[0] > 'z' {
		return false
	}
	for i := 1; i < len(t); i++ {
		b := t[i]
		if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '_' || b == '.') {
			return false
		}
	}
	return true
}

func checkID(field, id string) error {
	if !ValidID(id) {
		return invalid(field, id, ErrInvalidID)
	}
	return nil
}

func checkMember(org, user string) error {
	if err := checkID("org", org); err != nil {
		return err
	}
	return checkID("user", user)
}

func checkCodenames(codenames []string) error {
	for _, c := range codenames {
		if !ValidCodename(c) {
			return invalid("codename", c, ErrInvalidCodename)
		}
	}
	return nil
}

func checkRoleName(name string) error {
	if !validText(name, maxRoleNameBytes) {
		return invalid("name", name, ErrInvalidRoleName)
	}
	return nil
}

func checkWindow(from, until *time.Time) error {
	if from != nil && until != nil && !until.After(*from) {
		return invalid("valid_until", until.UTC().Format(time.RFC3339Nano), ErrInvalidWindow)
	}
	return nil
}
