package listener

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// PayloadVersion is the version of the payload protocol this package
// understands (see sql/triggers.sql).
const PayloadVersion = 1

// SourceMalformed is the Source of the Invalidation the listener sends its
// Target when a payload cannot be parsed: everything is evicted.
const SourceMalformed = "malformed"

// Invalidation is one parsed payload: the scopes whose cached entries must
// be evicted. The scopes add up: All, every key of Orgs, the (org, user)
// keys of Members and every key of Users.
type Invalidation struct {
	// Source is the table whose statement caused the payload ("t"),
	// "evict" for the orgperm.evict_* functions, SourceMalformed for a
	// payload that could not be parsed, or "" if unknown.
	Source string
	// All means everything.
	All bool
	// Orgs lists organizations every key of which is evicted.
	Orgs []string
	// Members lists (org, user) keys.
	Members []Member
	// Users lists users every key of which is evicted.
	Users []string
}

// Member is one (organization, user) key.
type Member struct{ Org, User string }

// maxDepth bounds the nesting of unknown values skipped by the parser.
const maxDepth = 64

// Bits of parser.seen, one per known field, to reject duplicates.
const (
	seenV = 1 << iota
	seenT
	seenAll
	seenOrgs
	seenMembers
	seenUsers
)

// ParsePayload parses a version-1 payload strictly:
//
//	{"v":1,"t":"<source>","all":true,"orgs":["o1"],"members":[["o1","u1"]],"users":["u1"]}
//
// "v" is required and must be the number 1 (another number is
// ErrUnsupportedVersion); "t" is optional; at least one scope must be
// present (all true, or a non-empty list); every ID must be a non-empty
// string; a member is an array of exactly two strings. Fields this version
// does not know are skipped, whatever their value, so that a v1 writer may
// add some; a known field given twice is rejected. Any other deviation from
// JSON (RFC 8259, UTF-8, no lone surrogates) or from this shape is
// ErrMalformedPayload. Every error is a *PayloadError.
//
// IDs without escapes share the payload's memory: parsing allocates only
// the slices (and the IDs that hold escapes).
func ParsePayload(payload string) (Invalidation, error) {
	p := parser{s: payload}
	inv, err := p.parse()
	if err != nil {
		return Invalidation{}, err
	}
	return inv, nil
}

// parser is a single-pass JSON parser for exactly the payload's shape. Its
// methods that parse a known field return a reason ("" when fine) and leave
// the position anywhere on failure: parse then rewinds and skips the value
// with the general grammar, to tell a well-formed value of the wrong shape
// (remembered, reported only if the version is 1) from broken JSON
// (reported at once).
type parser struct {
	s    string
	i    int
	seen uint8
}

func (p *parser) fail(off int, reason string) *PayloadError {
	return &PayloadError{Err: ErrMalformedPayload, Offset: off, Reason: reason}
}

func (p *parser) parse() (Invalidation, error) {
	var (
		inv       Invalidation
		version   = -1 // -1 missing, 0 not a number, 1, 2 another number
		versionAt int
		versionS  string
		shapeErr  *PayloadError
	)
	p.ws()
	if !p.eat('{') {
		return inv, p.fail(p.i, "not a JSON object")
	}
	p.ws()
	if !p.eat('}') {
		for {
			keyAt := p.i
			key, ok := p.str()
			if !ok {
				return inv, p.fail(keyAt, "bad object key")
			}
			p.ws()
			if !p.eat(':') {
				return inv, p.fail(p.i, "expected ':'")
			}
			p.ws()
			at := p.i
			reason := ""
			bit := uint8(0)
			switch key {
			case "v":
				bit = seenV
				versionAt = at
				if c := p.peek(); c == '-' || (c >= '0' && c <= '9') {
					versionS, ok = p.num()
					switch {
					case !ok:
						reason = "bad number"
					case versionS == "1":
						version = 1
					default:
						if f, err := strconv.ParseFloat(versionS, 64); err == nil && f == 1 {
							version = 1
						} else {
							version = 2
						}
					}
				} else {
					version, reason = 0, `"v" is not a number`
				}
			case "t":
				bit = seenT
				if inv.Source, ok = p.str(); !ok {
					reason = `"t" is not a string`
				}
			case "all":
				bit = seenAll
				switch {
				case p.lit("true"):
					inv.All = true
				case p.lit("false"):
					inv.All = false
				default:
					reason = `"all" is not a boolean`
				}
			case "orgs":
				bit = seenOrgs
				inv.Orgs, reason = p.strList(`"orgs"`)
			case "members":
				bit = seenMembers
				inv.Members, reason = p.members()
			case "users":
				bit = seenUsers
				inv.Users, reason = p.strList(`"users"`)
			default:
				if !p.skip(0) {
					return inv, p.fail(at, "bad value")
				}
			}
			if bit != 0 && p.seen&bit != 0 && reason == "" {
				reason = "duplicate field " + strconv.Quote(key)
			}
			p.seen |= bit
			if reason != "" {
				p.i = at
				if !p.skip(0) {
					return inv, p.fail(at, "bad value")
				}
				if shapeErr == nil {
					shapeErr = p.fail(at, reason)
				}
			}
			p.ws()
			if p.eat(',') {
				p.ws()
				continue
			}
			if p.eat('}') {
				break
			}
			return inv, p.fail(p.i, "expected ',' or '}'")
		}
	}
	p.ws()
	if p.i != len(p.s) {
		return inv, p.fail(p.i, "data after the object")
	}
	switch version {
	case -1:
		return inv, p.fail(0, `missing "v"`)
	case 0:
		return inv, p.fail(versionAt, `"v" is not a number`)
	case 2:
		return inv, &PayloadError{Err: ErrUnsupportedVersion, Offset: versionAt, Reason: `"v" is ` + versionS}
	}
	if shapeErr != nil {
		return inv, shapeErr
	}
	if !inv.All && len(inv.Orgs) == 0 && len(inv.Members) == 0 && len(inv.Users) == 0 {
		return inv, p.fail(0, "no scope")
	}
	return inv, nil
}

func (p *parser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *parser) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *parser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) lit(word string) bool {
	if len(p.s)-p.i >= len(word) && p.s[p.i:p.i+len(word)] == word {
		p.i += len(word)
		return true
	}
	return false
}

// strList parses an array of non-empty strings. An empty array is nil.
func (p *parser) strList(field string) ([]string, string) {
	if !p.eat('[') {
		return nil, field + " is not an array"
	}
	p.ws()
	if p.eat(']') {
		return nil, ""
	}
	var out []string
	for {
		s, ok := p.str()
		if !ok {
			return nil, field + " holds a non-string"
		}
		if s == "" {
			return nil, field + " holds an empty ID"
		}
		out = append(out, s)
		p.ws()
		if p.eat(']') {
			return out, ""
		}
		if !p.eat(',') {
			return nil, "bad array"
		}
		p.ws()
	}
}

// members parses an array of [org, user] pairs of non-empty strings.
func (p *parser) members() ([]Member, string) {
	if !p.eat('[') {
		return nil, `"members" is not an array`
	}
	p.ws()
	if p.eat(']') {
		return nil, ""
	}
	var out []Member
	for {
		if !p.eat('[') {
			return nil, `"members" holds a non-array`
		}
		p.ws()
		org, ok := p.str()
		p.ws()
		if !ok || !p.eat(',') {
			return nil, `"members" holds an element that is not [org, user]`
		}
		p.ws()
		user, ok := p.str()
		p.ws()
		if !ok || !p.eat(']') {
			return nil, `"members" holds an element that is not [org, user]`
		}
		if org == "" || user == "" {
			return nil, `"members" holds an empty ID`
		}
		out = append(out, Member{Org: org, User: user})
		p.ws()
		if p.eat(']') {
			return out, ""
		}
		if !p.eat(',') {
			return nil, "bad array"
		}
		p.ws()
	}
}

// str parses a JSON string. A string without escapes is a substring of the
// payload; one with escapes is decoded into a new string.
func (p *parser) str() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start := p.i
	ascii := true
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			s := p.s[start:p.i]
			p.i++
			if !ascii && !utf8.ValidString(s) {
				return "", false
			}
			return s, true
		case c == '\\':
			return p.strSlow(start)
		case c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		p.i++
	}
	return "", false
}

// strSlow decodes a string holding escapes; p.i is at the first backslash
// and start just after the opening quote.
func (p *parser) strSlow(start int) (string, bool) {
	buf := make([]byte, 0, p.i-start+16)
	buf = append(buf, p.s[start:p.i]...)
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			if !utf8.Valid(buf) {
				return "", false
			}
			return string(buf), true
		case c < 0x20:
			return "", false
		case c != '\\':
			buf = append(buf, c)
			p.i++
			continue
		}
		p.i++ // the backslash
		if p.i >= len(p.s) {
			return "", false
		}
		e := p.s[p.i]
		p.i++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", false
			}
			if utf16.IsSurrogate(r) {
				// Only a high surrogate followed by an escaped low one is a
				// character; a lone half is rejected.
				if r >= 0xdc00 || !p.lit(`\u`) {
					return "", false
				}
				r2, ok := p.hex4()
				if !ok {
					return "", false
				}
				if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
					return "", false
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", false
		}
	}
	return "", false
}

func (p *parser) hex4() (rune, bool) {
	if len(p.s)-p.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range []byte(p.s[p.i : p.i+4]) {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}

// num parses a JSON number and returns its text.
func (p *parser) num() (string, bool) {
	start := p.i
	p.eat('-')
	switch c := p.peek(); {
	case c == '0':
		p.i++
	case c >= '1' && c <= '9':
		p.digits()
	default:
		return "", false
	}
	if p.eat('.') && !p.digits() {
		return "", false
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		p.i++
		if c := p.peek(); c == '+' || c == '-' {
			p.i++
		}
		if !p.digits() {
			return "", false
		}
	}
	return p.s[start:p.i], true
}

// digits consumes [0-9]* and reports whether there was at least one.
func (p *parser) digits() bool {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}

// skip consumes any JSON value, nested at most maxDepth deep.
func (p *parser) skip(depth int) bool {
	if depth > maxDepth {
		return false
	}
	switch c := p.peek(); {
	case c == '"':
		_, ok := p.str()
		return ok
	case c == '-' || (c >= '0' && c <= '9'):
		_, ok := p.num()
		return ok
	case c == 't':
		return p.lit("true")
	case c == 'f':
		return p.lit("false")
	case c == 'n':
		return p.lit("null")
	case c == '[':
		p.i++
		p.ws()
		if p.eat(']') {
			return true
		}
		for {
			if !p.skip(depth + 1) {
				return false
			}
			p.ws()
			if p.eat(']') {
				return true
			}
			if !p.eat(',') {
				return false
			}
			p.ws()
		}
	case c == '{':
		p.i++
		p.ws()
		if p.eat('}') {
			return true
		}
		for {
			if _, ok := p.str(); !ok {
				return false
			}
			p.ws()
			if !p.eat(':') {
				return false
			}
			p.ws()
			if !p.skip(depth + 1) {
				return false
			}
			p.ws()
			if p.eat('}') {
				return true
			}
			if !p.eat(',') {
				return false
			}
			p.ws()
		}
	}
	return false
}

// SourceDDL is the Source of the payload orgperm's event trigger sends when
// a table, trigger or function of orgperm is altered, replaced, enabled,
// disabled or dropped: everything is evicted, and the listener verifies the
// database side again before it trusts the cache (Config.Verify).
const SourceDDL = "ddl"
