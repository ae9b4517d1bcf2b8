package listener

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParsePayloadValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		payload string
		want    Invalidation
	}{
		{"all", `{"v":1,"t":"permissions","all":true}`,
			Invalidation{Source: "permissions", All: true}},
		{"orgs", `{"v":1,"t":"roles","orgs":["o1","o2"]}`,
			Invalidation{Source: "roles", Orgs: []string{"o1", "o2"}}},
		{"members", `{"v":1,"t":"memberships","members":[["o1","u1"],["o1","u2"]]}`,
			Invalidation{Source: "memberships", Members: []Member{{"o1", "u1"}, {"o1", "u2"}}}},
		{"users", `{"v":1,"t":"evict","users":["u1"]}`,
			Invalidation{Source: "evict", Users: []string{"u1"}}},
		{"combined", `{"v":1,"t":"x","all":true,"orgs":["o"],"members":[["o","u"]],"users":["u"]}`,
			Invalidation{Source: "x", All: true, Orgs: []string{"o"}, Members: []Member{{"o", "u"}}, Users: []string{"u"}}},
		{"no source", `{"v":1,"all":true}`, Invalidation{All: true}},
		{"empty source", `{"v":1,"t":"","orgs":["o"]}`, Invalidation{Orgs: []string{"o"}}},
		{"fields in any order", `{"users":["u"],"t":"s","v":1}`, Invalidation{Source: "s", Users: []string{"u"}}},
		{"all false with a scope", `{"v":1,"all":false,"orgs":["o"]}`, Invalidation{Orgs: []string{"o"}}},
		{"empty list with a scope", `{"v":1,"orgs":[],"users":["u"]}`, Invalidation{Users: []string{"u"}}},
		{"whitespace", " \t\n{ \"v\" : 1 ,\r\n \"members\" : [ [ \"o\" , \"u\" ] ] } \n",
			Invalidation{Members: []Member{{"o", "u"}}}},
		{"unknown fields", `{"v":1,"orgs":["o"],"x":{"a":[1,-2.5e3,null,true,false,"s",{}]},"y":[],"z":"\u00e9"}`,
			Invalidation{Orgs: []string{"o"}}},
		{"unknown field named like nothing known", `{"V":2,"v":1,"all":true}`, Invalidation{All: true}},
		{"v as 1.0", `{"v":1.0,"all":true}`, Invalidation{All: true}},
		{"v as 1e0", `{"v":1e0,"all":true}`, Invalidation{All: true}},
		{"escaped strings", `{"v":1,"t":"a\"b","orgs":["o\\1","\u00fc\u4e16","tab\there","\/\b\f\n\r","\ud83d\ude00"]}`,
			Invalidation{Source: `a"b`, Orgs: []string{`o\1`, "ü世", "tab\there", "/\b\f\n\r", "😀"}}},
		{"raw UTF-8", `{"v":1,"users":["ünïcødé 世界"]}`, Invalidation{Users: []string{"ünïcødé 世界"}}},
		{"escaped key", `{"\u0076":1,"all":true}`, Invalidation{All: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePayload(tt.payload)
			if err != nil {
				t.Fatalf("ParsePayload(%q): %v", tt.payload, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParsePayload(%q)\n got %#v\nwant %#v", tt.payload, got, tt.want)
			}
		})
	}
}

func TestParsePayloadInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		payload string
		want    error
	}{
		{"empty", ``, ErrMalformedPayload},
		{"garbage", `garbage`, ErrMalformedPayload},
		{"array", `[1]`, ErrMalformedPayload},
		{"string", `"x"`, ErrMalformedPayload},
		{"null", `null`, ErrMalformedPayload},
		{"unterminated", `{"v":1,"all":true`, ErrMalformedPayload},
		{"trailing data", `{"v":1,"all":true} x`, ErrMalformedPayload},
		{"two objects", `{"v":1,"all":true}{}`, ErrMalformedPayload},
		{"trailing comma", `{"v":1,"all":true,}`, ErrMalformedPayload},
		{"missing v", `{"all":true}`, ErrMalformedPayload},
		{"empty object", `{}`, ErrMalformedPayload},
		{"v string", `{"v":"1","all":true}`, ErrMalformedPayload},
		{"v null", `{"v":null,"all":true}`, ErrMalformedPayload},
		{"v bad number", `{"v":01,"all":true}`, ErrMalformedPayload},
		{"v 2", `{"v":2,"all":true}`, ErrUnsupportedVersion},
		{"v 0", `{"v":0,"all":true}`, ErrUnsupportedVersion},
		{"v 1.5", `{"v":1.5,"all":true}`, ErrUnsupportedVersion},
		{"v 2 with a new shape", `{"v":2,"orgs":{"o":1}}`, ErrUnsupportedVersion},
		{"v 2 after a bad field", `{"orgs":7,"v":2}`, ErrUnsupportedVersion},
		{"no scope", `{"v":1,"t":"x"}`, ErrMalformedPayload},
		{"all false only", `{"v":1,"all":false}`, ErrMalformedPayload},
		{"empty lists only", `{"v":1,"orgs":[],"members":[],"users":[]}`, ErrMalformedPayload},
		{"all string", `{"v":1,"all":"true"}`, ErrMalformedPayload},
		{"all number", `{"v":1,"all":1}`, ErrMalformedPayload},
		{"t number", `{"v":1,"t":1,"all":true}`, ErrMalformedPayload},
		{"orgs string", `{"v":1,"orgs":"o1"}`, ErrMalformedPayload},
		{"orgs null", `{"v":1,"orgs":null}`, ErrMalformedPayload},
		{"orgs number element", `{"v":1,"orgs":[1]}`, ErrMalformedPayload},
		{"orgs null element", `{"v":1,"orgs":[null]}`, ErrMalformedPayload},
		{"orgs empty ID", `{"v":1,"orgs":[""]}`, ErrMalformedPayload},
		{"users empty ID", `{"v":1,"users":["u",""]}`, ErrMalformedPayload},
		{"members flat", `{"v":1,"members":["o","u"]}`, ErrMalformedPayload},
		{"members one string", `{"v":1,"members":[["o"]]}`, ErrMalformedPayload},
		{"members three strings", `{"v":1,"members":[["o","u","x"]]}`, ErrMalformedPayload},
		{"members number", `{"v":1,"members":[["o",1]]}`, ErrMalformedPayload},
		{"members empty org", `{"v":1,"members":[["","u"]]}`, ErrMalformedPayload},
		{"members empty user", `{"v":1,"members":[["o",""]]}`, ErrMalformedPayload},
		{"members object", `{"v":1,"members":[{"org":"o","user":"u"}]}`, ErrMalformedPayload},
		{"duplicate v", `{"v":1,"v":1,"all":true}`, ErrMalformedPayload},
		{"duplicate orgs", `{"v":1,"orgs":["a"],"orgs":["b"]}`, ErrMalformedPayload},
		{"bad escape", `{"v":1,"orgs":["\x"]}`, ErrMalformedPayload},
		{"short unicode escape", `{"v":1,"orgs":["\u12"]}`, ErrMalformedPayload},
		{"lone high surrogate", `{"v":1,"orgs":["\ud83d"]}`, ErrMalformedPayload},
		{"lone low surrogate", `{"v":1,"orgs":["\ude00"]}`, ErrMalformedPayload},
		{"raw control character", "{\"v\":1,\"orgs\":[\"a\nb\"]}", ErrMalformedPayload},
		{"invalid UTF-8", "{\"v\":1,\"orgs\":[\"\xff\"]}", ErrMalformedPayload},
		{"invalid UTF-8 after escape", "{\"v\":1,\"orgs\":[\"\\n\xff\"]}", ErrMalformedPayload},
		{"single quotes", `{'v':1,'all':true}`, ErrMalformedPayload},
		{"bare key", `{v:1,all:true}`, ErrMalformedPayload},
		{"bad unknown value", `{"v":1,"all":true,"x":tru}`, ErrMalformedPayload},
		{"too deep unknown value", `{"v":1,"all":true,"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, ErrMalformedPayload},
		{"NaN", `{"v":NaN,"all":true}`, ErrMalformedPayload},
		{"plus number", `{"v":+1,"all":true}`, ErrMalformedPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePayload(tt.payload)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParsePayload(%q) = %+v, %v; want %v", tt.payload, got, err, tt.want)
			}
			var pe *PayloadError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *PayloadError", err)
			}
			if pe.Offset < 0 || pe.Offset > len(tt.payload) || pe.Reason == "" {
				t.Fatalf("bad PayloadError %+v", pe)
			}
			if !reflect.DeepEqual(got, Invalidation{}) {
				t.Fatalf("got %+v with an error; want the zero Invalidation", got)
			}
		})
	}
}

func TestPayloadErrorMessage(t *testing.T) {
	t.Parallel()
	_, err := ParsePayload(`{"v":1,"orgs":[""]}`)
	want := `listener: malformed payload: "orgs" holds an empty ID (at byte 14)`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v; want %s", err, want)
	}
}

// encodePayload encodes inv as a version-1 payload with encoding/json, as
// an independent writer would.
func encodePayload(inv Invalidation) string {
	type payload struct {
		V       int         `json:"v"`
		T       string      `json:"t,omitempty"`
		All     bool        `json:"all,omitempty"`
		Orgs    []string    `json:"orgs,omitempty"`
		Members [][2]string `json:"members,omitempty"`
		Users   []string    `json:"users,omitempty"`
	}
	p := payload{V: 1, T: inv.Source, All: inv.All, Orgs: inv.Orgs, Users: inv.Users}
	for _, m := range inv.Members {
		p.Members = append(p.Members, [2]string{m.Org, m.User})
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestParsePayloadRoundTrip(t *testing.T) {
	t.Parallel()
	invs := []Invalidation{
		{Source: "memberships", Members: []Member{{"o\"1", "u\\1"}, {"<&>", "\u2028\x00\x1f"}}},
		{All: true},
		{Source: "évict", Orgs: []string{"😀", "a b"}, Users: []string{"u"}},
	}
	for _, inv := range invs {
		got, err := ParsePayload(encodePayload(inv))
		if err != nil || !reflect.DeepEqual(got, inv) {
			t.Fatalf("round trip of %+v via %s: %+v, %v", inv, encodePayload(inv), got, err)
		}
	}
}

func FuzzParsePayload(f *testing.F) {
	// More seeds are in testdata/fuzz/FuzzParsePayload.
	f.Add(`{"v":1,"t":"memberships","members":[["o1","u1"]]}`)
	f.Add(`{"v":1,"all":true,"x":[{"y":null}]}`)
	f.Fuzz(func(t *testing.T, payload string) {
		inv, err := ParsePayload(payload)
		if err != nil {
			var pe *PayloadError
			if !errors.As(err, &pe) || !(errors.Is(err, ErrMalformedPayload) || errors.Is(err, ErrUnsupportedVersion)) {
				t.Fatalf("error %v (%T) is not a *PayloadError of a documented kind", err, err)
			}
			return
		}
		if !json.Valid([]byte(payload)) {
			t.Fatalf("accepted invalid JSON %q", payload)
		}
		if !inv.All && len(inv.Orgs)+len(inv.Members)+len(inv.Users) == 0 {
			t.Fatalf("accepted %q with no scope", payload)
		}
		for _, id := range append(append([]string{}, inv.Orgs...), inv.Users...) {
			if id == "" {
				t.Fatalf("empty ID from %q", payload)
			}
		}
		for _, m := range inv.Members {
			if m.Org == "" || m.User == "" {
				t.Fatalf("empty member ID from %q", payload)
			}
		}
		again, err := ParsePayload(encodePayload(inv))
		if err != nil || !reflect.DeepEqual(again, inv) {
			t.Fatalf("round trip of %q: %+v, then %+v, %v", payload, inv, again, err)
		}
	})
}

var benchPayload = `{"v":1,"t":"membership_roles","members":[["8c1f5a3e-2b7d-4e61-9f0a-3d5c7b9e1a24","a4e7c2d9-6b1f-4a38-8e5d-0c9b3f7a1e62"],["8c1f5a3e-2b7d-4e61-9f0a-3d5c7b9e1a24","f0b9d3c7-1e4a-4c85-b2d6-7a8e5f3c9d10"]]}`

func BenchmarkParsePayload(b *testing.B) {
	b.Run("members", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(benchPayload)))
		for b.Loop() {
			if _, err := ParsePayload(benchPayload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("members_escaped", func(b *testing.B) {
		p := `{"v":1,"t":"memberships","members":[["org \"one\"","caf\u00e9"],["org \"one\"","u\\2"]]}`
		b.ReportAllocs()
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			if _, err := ParsePayload(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("all", func(b *testing.B) {
		p := `{"v":1,"t":"permissions","all":true}`
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ParsePayload(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	// encoding/json into a matching struct, for comparison only: it does
	// not check the shape as ParsePayload does.
	b.Run("members_encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(benchPayload)))
		for b.Loop() {
			var p struct {
				V       int         `json:"v"`
				T       string      `json:"t"`
				Members [][2]string `json:"members"`
			}
			if err := json.Unmarshal([]byte(benchPayload), &p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
