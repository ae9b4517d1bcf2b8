package membership

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

// BenchmarkRLS measures orgperm.protect_table's policy on a 200,000-row
// table of one organization, against the same statements on the same table
// without row-level security (the table owner's session, which RLS does not
// apply to), in interleaved rounds (one op = one round) so that the load of
// the machine hits both sides alike. Every ratio is policy time / plain
// time of the same round; the medians over the rounds are reported.
//
//	go test -run '^$' -bench BenchmarkRLS -benchtime 10x ./pkg/membership/
//
// Principals: "all", who holds billing.view_invoice and a grant of every
// invoice through a role (sees all 200,000 rows); "some", who holds
// billing.view_invoice and 1,000 grants of single invoices (sees 1,000).
// 2,000 other members hold 10,000 single-invoice grants between them.
// Statements: a full scan (count and sum over every row the principal may
// see) and a primary-key lookup (a row the principal may see). The policy
// is the one with a codename, the costlier form. Both sessions run with
// max_parallel_workers_per_gather = 0: on a shared 2-core machine parallel
// workers add noise, not information.
//
// The principal is set once per session (set_config(..., false)) so that
// the lookup measures the statement alone; pk-batch adds the per-transaction
// form, set_config and the lookup in one pgx.Batch (one round trip, one
// implicit transaction), against the plain lookup.
func BenchmarkRLS(b *testing.B) {
	const rows = 200_000
	ctx := context.Background()
	plain := pgtest.NewPool(b)
	exec := func(sql string, args ...any) {
		b.Helper()
		if _, err := plain.Exec(ctx, sql, args...); err != nil {
			b.Fatalf("%v\n%s", err, sql)
		}
	}
	exec(`INSERT INTO orgperm.permissions (codename) VALUES ('billing.view_invoice')`)
	exec(`INSERT INTO orgperm.roles (org_id, name) VALUES ('acme', 'all invoices'), ('acme', 'viewer')`)
	exec(`INSERT INTO orgperm.role_permissions (role_id, codename) SELECT id, 'billing.view_invoice' FROM orgperm.roles`)
	exec(`INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('acme', 'all'), ('acme', 'some')`)
	exec(`INSERT INTO orgperm.membership_roles (org_id, user_id, role_id)
		SELECT 'acme', CASE name WHEN 'viewer' THEN 'some' ELSE 'all' END, id FROM orgperm.roles`)
	exec(`INSERT INTO orgperm.data_access (org_id, role_id, resource_type) SELECT 'acme', id, 'invoice' FROM orgperm.roles WHERE name = 'all invoices'`)
	exec(`INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id)
		SELECT 'acme', 'some', 'invoice', (i * 197)::text FROM generate_series(1, 1000) i`)
	// Other members with a few grants each, so that the statistics look
	// like an organization's and not like two users'.
	exec(`INSERT INTO orgperm.memberships (org_id, user_id) SELECT 'acme', 'other-' || i FROM generate_series(1, 2000) i`)
	exec(`INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id)
		SELECT 'acme', 'other-' || (1 + i % 2000), 'invoice', i::text FROM generate_series(1, 10000) i`)
	exec(`CREATE TABLE public.invoices (id bigint PRIMARY KEY, org_id text NOT NULL, amount int NOT NULL, note text NOT NULL)`)
	exec(`INSERT INTO public.invoices SELECT i, 'acme', i % 1000, 'invoice ' || i FROM generate_series(1, $1::int) i`, rows)
	exec(`VACUUM ANALYZE public.invoices`)
	exec(`ANALYZE orgperm.memberships, orgperm.membership_roles, orgperm.data_access, orgperm.roles, orgperm.role_permissions`)
	role := fmt.Sprintf("orgperm_bench_app_%d", rand.Uint64())
	exec(`CREATE ROLE ` + role + ` NOLOGIN`)
	b.Cleanup(func() {
		if _, err := plain.Exec(context.Background(), `DROP OWNED BY `+role+`; DROP ROLE `+role); err != nil {
			b.Errorf("dropping role: %v", err)
		}
	})
	exec(`GRANT orgperm_reader TO ` + role)
	exec(`GRANT SELECT ON public.invoices TO ` + role)
	exec(`SELECT orgperm.protect_table('public.invoices', 'org_id', 'id', 'invoice', 'billing.view_invoice')`)

	// One dedicated connection per side and principal.
	conn := func(role, user string) *pgxpool.Conn {
		b.Helper()
		c, err := plain.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Release)
		if _, err := c.Exec(ctx, `SET max_parallel_workers_per_gather = 0`); err != nil {
			b.Fatal(err)
		}
		if role != "" {
			if _, err := c.Exec(ctx, `SET ROLE `+role+`; SELECT set_config('orgperm.org_id', 'acme', false), set_config('orgperm.user_id', '`+user+`', false)`); err != nil {
				b.Fatal(err)
			}
		}
		return c
	}
	base, all, some := conn("", ""), conn(role, "all"), conn(role, "some")
	// Each connection reads the whole table once before timing starts, so
	// that every side finds it in shared buffers.
	const scanSQL = `SELECT count(*), sum(amount) FROM public.invoices`
	const pkSQL = `SELECT id, amount, note FROM public.invoices WHERE id = $1`
	wantCount := map[*pgxpool.Conn]int64{base: rows, all: rows, some: 1000}
	scan := func(c *pgxpool.Conn) time.Duration {
		start := time.Now()
		var n, sum int64
		if err := c.QueryRow(ctx, scanSQL).Scan(&n, &sum); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		if n != wantCount[c] {
			b.Fatalf("scan saw %d rows, want %d", n, wantCount[c])
		}
		return d
	}
	// The lookups: ids "some" may see (multiples of 197), the same for
	// every side.
	lookups := make([]int64, 200)
	for i := range lookups {
		lookups[i] = int64(1+rand.IntN(1000)) * 197
	}
	pk := func(c *pgxpool.Conn) time.Duration {
		start := time.Now()
		for _, id := range lookups {
			var got int64
			var amount int
			var note string
			if err := c.QueryRow(ctx, pkSQL, id).Scan(&got, &amount, &note); err != nil {
				b.Fatalf("lookup %d: %v", id, err)
			}
		}
		return time.Since(start) / time.Duration(len(lookups))
	}
	pkBatch := func(c *pgxpool.Conn, user string) time.Duration {
		start := time.Now()
		for _, id := range lookups {
			batch := &pgx.Batch{}
			batch.Queue(setPrincipalSQL, user, "acme")
			batch.Queue(pkSQL, id)
			br := c.SendBatch(ctx, batch)
			if _, err := br.Exec(); err != nil {
				b.Fatal(err)
			}
			var got int64
			var amount int
			var note string
			if err := br.QueryRow().Scan(&got, &amount, &note); err != nil {
				b.Fatalf("batch lookup %d: %v", id, err)
			}
			if err := br.Close(); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start) / time.Duration(len(lookups))
	}
	for _, c := range []*pgxpool.Conn{base, all, some} {
		scan(c)
		pk(c)
	}
	pkBatch(all, "all")

	var (
		scanAll, scanSome, pkAll, pkSome, batchAll []float64
		tScan, tScanAll, tScanSome, tPK, tPKAll    []time.Duration
	)
	round := 0
	for b.Loop() {
		// Alternate which side goes first.
		var sb, sa, ss, pb, pa, ps, ba time.Duration
		if round%2 == 0 {
			sb, sa, ss = scan(base), scan(all), scan(some)
			pb, pa, ps, ba = pk(base), pk(all), pk(some), pkBatch(all, "all")
		} else {
			ss, sa, sb = scan(some), scan(all), scan(base)
			ba, ps, pa, pb = pkBatch(all, "all"), pk(some), pk(all), pk(base)
		}
		round++
		scanAll = append(scanAll, float64(sa)/float64(sb))
		scanSome = append(scanSome, float64(ss)/float64(sb))
		pkAll = append(pkAll, float64(pa)/float64(pb))
		pkSome = append(pkSome, float64(ps)/float64(pb))
		batchAll = append(batchAll, float64(ba)/float64(pb))
		tScan, tScanAll, tScanSome = append(tScan, sb), append(tScanAll, sa), append(tScanSome, ss)
		tPK, tPKAll = append(tPK, pb), append(tPKAll, pa)
	}
	b.ReportMetric(median(scanAll), "scan-all-x")
	b.ReportMetric(median(scanSome), "scan-some-x")
	b.ReportMetric(median(pkAll), "pk-all-x")
	b.ReportMetric(median(pkSome), "pk-some-x")
	b.ReportMetric(median(batchAll), "pk-batch-x")
	b.Logf("%d rounds; medians: scan plain %v, all %v, some %v; lookup plain %v, all %v",
		round, medianD(tScan), medianD(tScanAll), medianD(tScanSome), medianD(tPK), medianD(tPKAll))
	b.Logf("ratios per round: scan-all %.2f, scan-some %.2f, pk-all %.2f, pk-some %.2f, pk-batch %.2f",
		scanAll, scanSome, pkAll, pkSome, batchAll)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianD(xs []time.Duration) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
