package membership

import (
	"context"
	"testing"
)

// The fill benchmarks: Load of a typical and of a heavy member, against a
// bare primary-key select in the same run, each reporting round-trips/op
// counted by a pgx tracer on the pool (it must be 1).
//
//	go test -run '^$' -bench . ./pkg/membership/

// seedMember writes, with set-based SQL, a member of org "bench" who holds
// roles roles (half system, half of the org), with codenames codenames
// spread over them, and grants data grants (half to the user, half to the
// roles, over 5 resource types).
func seedMember(b *testing.B, store *Store, roles, codenames, grants int) {
	b.Helper()
	ctx := context.Background()
	// Every statement takes $1, $2 and $3 (codenames, roles, grants);
	// "$n::int IS NOT NULL" marks the ones a statement does not use.
	for _, q := range []string{
		`INSERT INTO orgperm.permissions (codename) SELECT 'app' || (i % 10) || '.perm_' || i FROM generate_series(1, $1) i WHERE $2::int IS NOT NULL AND $3::int IS NOT NULL`,
		`INSERT INTO orgperm.roles (org_id, name) SELECT CASE WHEN i % 2 = 0 THEN NULL ELSE 'bench' END, 'role ' || i FROM generate_series(1, $2) i WHERE $1::int IS NOT NULL AND $3::int IS NOT NULL`,
		`INSERT INTO orgperm.role_permissions (role_id, codename)
		 SELECT r.id, p.codename FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM orgperm.roles) r
		 JOIN (SELECT codename, row_number() OVER (ORDER BY codename) - 1 AS n FROM orgperm.permissions) p ON p.n % $2 = r.n WHERE $1::int IS NOT NULL AND $3::int IS NOT NULL`,
		`INSERT INTO orgperm.memberships (org_id, user_id) SELECT 'bench', 'member' WHERE $1::int + $2::int + $3::int IS NOT NULL`,
		`INSERT INTO orgperm.membership_roles (org_id, user_id, role_id) SELECT 'bench', 'member', id FROM orgperm.roles WHERE $1::int + $2::int + $3::int IS NOT NULL`,
		`INSERT INTO orgperm.data_access (org_id, user_id, role_id, resource_type, resource_id)
		 SELECT 'bench', CASE WHEN i % 2 = 0 THEN 'member' END,
		        CASE WHEN i % 2 = 1 THEN (SELECT min(id) FROM orgperm.roles) + (i / 2) % $2 END,
		        'type' || (i % 5), 'record-' || i
		 FROM generate_series(1, $3) i WHERE $1::int IS NOT NULL`,
	} {
		if _, err := store.db.Exec(ctx, q, codenames, roles, grants); err != nil {
			b.Fatalf("seed: %v\n%s", err, q)
		}
	}
	// As autovacuum would after a bulk load: without statistics the
	// planner picks nested loops fit for empty tables.
	if _, err := store.db.Exec(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	s, err := store.Load(ctx, "bench", "member", t0)
	if err != nil {
		b.Fatal(err)
	}
	var ids int
	for _, typ := range s.ResourceTypes() {
		_, list := s.AccessibleIDs(typ)
		ids += len(list)
	}
	if len(s.Roles()) != roles || len(s.Permissions()) != codenames || ids != grants {
		b.Fatalf("seeded %d roles, %d codenames, %d grants", len(s.Roles()), len(s.Permissions()), ids)
	}
}

func benchLoad(b *testing.B, roles, codenames, grants int) {
	traced, _, tr := tracedPool(b)
	store := NewStore(traced)
	seedMember(b, store, roles, codenames, grants)
	ctx := context.Background()
	if _, err := store.Load(ctx, "bench", "member", t0); err != nil { // warm the statement cache
		b.Fatal(err)
	}
	start := tr.n.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s, err := store.Load(ctx, "bench", "member", t0)
		if err != nil || !s.Active() {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(tr.n.Load()-start)/float64(b.N), "round-trips/op")
}

// BenchmarkLoadTypical: 3 roles, 50 codenames, 20 grants.
func BenchmarkLoadTypical(b *testing.B) { benchLoad(b, 3, 50, 20) }

// BenchmarkLoadHeavy: 50 roles, 2,000 codenames, 10,000 grants.
func BenchmarkLoadHeavy(b *testing.B) { benchLoad(b, 50, 2000, 10000) }

// BenchmarkPKSelect is the floor: one primary-key lookup of the membership.
func BenchmarkPKSelect(b *testing.B) {
	traced, _, tr := tracedPool(b)
	store := NewStore(traced)
	seedMember(b, store, 3, 50, 20)
	ctx := context.Background()
	var status string
	start := tr.n.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := traced.QueryRow(ctx, `SELECT status FROM orgperm.memberships WHERE org_id = $1 AND user_id = $2`,
			"bench", "member").Scan(&status); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(tr.n.Load()-start)/float64(b.N), "round-trips/op")
}

// BenchmarkLoadManyTypical loads 10 typical members' sets in one batch.
func BenchmarkLoadManyTypical(b *testing.B) {
	traced, _, tr := tracedPool(b)
	store := NewStore(traced)
	seedMember(b, store, 3, 50, 20)
	ctx := context.Background()
	keys := make([]Key, 10)
	for i := range keys {
		keys[i] = Key{"bench", "member"}
	}
	start := tr.n.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := store.LoadMany(ctx, keys, t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(tr.n.Load()-start)/float64(b.N), "round-trips/op")
}

// BenchmarkHas is the check itself, on the heavy set.
func BenchmarkHas(b *testing.B) {
	traced, _, _ := tracedPool(b)
	store := NewStore(traced)
	seedMember(b, store, 50, 2000, 10000)
	s, err := store.Load(context.Background(), "bench", "member", t0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !s.Has("app3.perm_1003") || !s.CanAccess("type1", "record-1") {
			b.Fatal("denied")
		}
	}
}
