package membership

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

// BenchmarkQueryBigOrg times the read API on an org of 10,000 members,
// against a primary-key select of one membership (the yardstick) measured
// in the same run, interleaved round by round so that both see the same
// machine. It reports each read's p50 and p99 latency and their ratios to
// the yardstick's.
//
//	go test -run '^$' -bench QueryBigOrg -benchtime 2000x ./pkg/membership
//
// The org: 10,000 active members (every 20th invited), 5 org roles and a
// system role with 4 codenames each, every member holding one or two roles
// (some assignments expired); 3 other orgs of 2,000 members as neighbours.
// "who common" asks for a codename held by about 40% of the members, "who
// rare" for one held by 1% (the statement walks the whole org to fill a
// page), "members" is the first page of 100 with their roles, "members
// last" the last page.
func BenchmarkQueryBigOrg(b *testing.B) {
	ctx := context.Background()
	pool := pgtest.NewPool(b)
	bigOrgSeed(b, pool)
	s := NewStore(pool)

	// The cursor of the last page: after the 9,900th member by user ID.
	var lastAfter string
	if err := pool.QueryRow(ctx, `SELECT user_id FROM orgperm.memberships WHERE org_id = 'big' ORDER BY user_id OFFSET 9899 LIMIT 1`).
		Scan(&lastAfter); err != nil {
		b.Fatal(err)
	}
	lastCursor := encodeCursor(curMembers, lastAfter)

	ops := []struct {
		name string
		run  func() (int, error)
	}{
		{"pk-select", func() (int, error) {
			var st string
			err := pool.QueryRow(ctx, `SELECT status FROM ONLY orgperm.memberships WHERE org_id = $1 AND user_id = $2`, "big", "u05000").Scan(&st)
			return 1, err
		}},
		{"who-common", func() (int, error) {
			p, err := s.WhoHas(ctx, "big", "big.common", ListOptions{})
			return len(p.Items), err
		}},
		{"who-rare", func() (int, error) {
			p, err := s.WhoHas(ctx, "big", "big.rare", ListOptions{})
			return len(p.Items), err
		}},
		{"members", func() (int, error) {
			p, err := s.ListMembers(ctx, "big", MemberQuery{})
			return len(p.Items), err
		}},
		{"members-last", func() (int, error) {
			p, err := s.ListMembers(ctx, "big", MemberQuery{ListOptions: ListOptions{Cursor: lastCursor}})
			return len(p.Items), err
		}},
	}
	// Warm up connections and plans; check the sizes once.
	for _, op := range ops {
		for range 10 {
			n, err := op.run()
			if err != nil {
				b.Fatal(err)
			}
			if op.name == "who-rare" && (n < 50 || n > 150) {
				b.Fatalf("who-rare: %d holders", n)
			}
			if (op.name == "members" || op.name == "who-common" || op.name == "members-last") && n != DefaultLimit {
				b.Fatalf("%s: %d items", op.name, n)
			}
		}
	}
	lat := make([][]time.Duration, len(ops))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, op := range ops {
			start := time.Now()
			if _, err := op.run(); err != nil {
				b.Fatal(err)
			}
			lat[j] = append(lat[j], time.Since(start))
		}
	}
	b.StopTimer()
	pct := func(d []time.Duration, p float64) time.Duration {
		d = slices.Clone(d)
		slices.Sort(d)
		return d[min(len(d)-1, int(p*float64(len(d))))]
	}
	pk50, pk99 := pct(lat[0], 0.50), pct(lat[0], 0.99)
	for j, op := range ops {
		p50, p99 := pct(lat[j], 0.50), pct(lat[j], 0.99)
		b.ReportMetric(float64(p50.Microseconds()), op.name+"-p50-µs")
		b.ReportMetric(float64(p99.Microseconds()), op.name+"-p99-µs")
		if j > 0 {
			b.ReportMetric(float64(p50)/float64(pk50), op.name+"-p50-x-pk")
			b.ReportMetric(float64(p99)/float64(pk99), op.name+"-p99-x-pk")
		}
	}
}

// bigOrgSeed writes the benchmark's model with plain SQL.
func bigOrgSeed(b *testing.B, pool *pgxpool.Pool) {
	b.Helper()
	ctx := context.Background()
	_, err := pool.Exec(ctx, `
		INSERT INTO orgperm.permissions (codename)
		SELECT 'big.p' || g FROM generate_series(1, 20) g
		UNION ALL VALUES ('big.common'), ('big.rare');

		INSERT INTO orgperm.roles (org_id, name) VALUES (NULL, 'sys');
		INSERT INTO orgperm.roles (org_id, name) SELECT o, 'r' || g
		FROM unnest(ARRAY['big', 'n1', 'n2', 'n3']) o, generate_series(1, 5) g;
		INSERT INTO orgperm.role_permissions (role_id, codename)
		SELECT r.id, 'big.p' || (1 + (r.id * 7 + g) % 20) FROM orgperm.roles r, generate_series(1, 4) g
		ON CONFLICT DO NOTHING;
		INSERT INTO orgperm.role_permissions (role_id, codename)
		SELECT id, 'big.common' FROM orgperm.roles WHERE org_id = 'big' AND name IN ('r1', 'r2');
		INSERT INTO orgperm.role_permissions (role_id, codename)
		SELECT id, 'big.rare' FROM orgperm.roles WHERE org_id = 'big' AND name = 'r5';

		INSERT INTO orgperm.memberships (org_id, user_id, status)
		SELECT 'big', 'u' || lpad(g::text, 5, '0'), CASE WHEN g % 20 = 0 THEN 'invited' ELSE 'active' END
		FROM generate_series(1, 10000) g;
		INSERT INTO orgperm.memberships (org_id, user_id)
		SELECT o, 'u' || lpad(g::text, 5, '0') FROM unnest(ARRAY['n1', 'n2', 'n3']) o, generate_series(1, 2000) g;

		-- Every member: one role by user number (r1..r4, about 40% hold
		-- r1 or r2), the system role for every third, r5 (rare) for 1%;
		-- every seventh assignment expired.
		INSERT INTO orgperm.membership_roles (org_id, user_id, role_id, valid_until)
		SELECT m.org_id, m.user_id, r.id,
		       CASE WHEN substr(m.user_id, 2)::int % 7 = 0 THEN now() - interval '1 day' END
		FROM orgperm.memberships m JOIN orgperm.roles r ON r.org_id = m.org_id
		 AND r.name = 'r' || (1 + substr(m.user_id, 2)::int % 4);
		INSERT INTO orgperm.membership_roles (org_id, user_id, role_id)
		SELECT m.org_id, m.user_id, (SELECT id FROM orgperm.roles WHERE org_id IS NULL)
		FROM orgperm.memberships m WHERE substr(m.user_id, 2)::int % 3 = 0;
		INSERT INTO orgperm.membership_roles (org_id, user_id, role_id)
		SELECT 'big', m.user_id, (SELECT id FROM orgperm.roles WHERE org_id = 'big' AND name = 'r5')
		FROM orgperm.memberships m WHERE m.org_id = 'big' AND substr(m.user_id, 2)::int % 100 = 1;
		ANALYZE`)
	if err != nil {
		b.Fatal(fmt.Errorf("seed: %w", err))
	}
}
