package membership

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/proccpu"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// BenchmarkRLS measures orgperm.protect_table's policy on a 200,000-row
// table of one organization, against the same statements on the same table
// without row-level security (the table owner's session, which RLS does not
// apply to), in rounds (one op = one round) in which the sides take turns
// statement by statement, so that the load of the machine hits every side
// alike. Within a round, a scan's time is the fastest of 3 and a lookup's
// the median of 60; every ratio is policy time / plain time of the same
// round, and the medians over the rounds are reported.
//
//	go test -run '^$' -bench BenchmarkRLS -benchtime 10x ./pkg/membership/
//
// Principals, all holding billing.view_invoice (the policy is the one with
// a codename, the costlier form): "all", with a grant of every invoice
// through a role (sees all 200,000 rows); "few", with 20 grants of single
// invoices; "some", with 1,000. 2,000 other members hold 10,000
// single-invoice grants between them. Statements: a full scan (count and
// sum over every row the principal may see: scan-*-x) and a primary-key
// lookup of a row every principal may see (pk-*-x). Every session runs with
// max_parallel_workers_per_gather = 0: on a shared 2-core machine parallel
// workers add noise, not information.
//
// The principal is set once per session (set_config(..., false)) so that
// pk-*-x measures the statement alone; batch-*-x is the per-transaction
// form, set_config and the lookup in one pgx.Batch (one round trip, one
// implicit transaction), against the plain lookup.
//
// cpu-scan-*-x and cpu-pk-*-x are the same ratios of the CPU time the
// server process used for the statement (Linux, local server: read from
// /proc/<pid>/schedstat), which the load of other processes on a shared
// machine hardly moves; the wall-clock ratios are the acceptance figures.
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
	exec(`INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('acme', 'all'), ('acme', 'few'), ('acme', 'some')`)
	exec(`INSERT INTO orgperm.membership_roles (org_id, user_id, role_id)
		SELECT 'acme', u, id FROM orgperm.roles, unnest('{few,some}'::text[]) u WHERE name = 'viewer'
		UNION ALL SELECT 'acme', 'all', id FROM orgperm.roles WHERE name = 'all invoices'`)
	exec(`INSERT INTO orgperm.data_access (org_id, role_id, resource_type) SELECT 'acme', id, 'invoice' FROM orgperm.roles WHERE name = 'all invoices'`)
	exec(`INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id)
		SELECT 'acme', 'some', 'invoice', (i * 197)::text FROM generate_series(1, 1000) i
		UNION ALL SELECT 'acme', 'few', 'invoice', (i * 197 * 50)::text FROM generate_series(1, 20) i`)
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
	type side struct {
		name string
		conn *pgxpool.Conn
		user string // "" for the plain side
		rows int64  // rows the full scan sees
	}
	sides := []side{
		{"plain", conn("", ""), "", rows},
		{"all", conn(role, "all"), "all", rows},
		{"few", conn(role, "few"), "few", 20},
		{"some", conn(role, "some"), "some", 1000},
	}
	for _, sd := range sides {
		checkRLS(b, sd.conn, "invoices", sd.user != "")
	}
	// cpu is the CPU time the side's server process has used, where the
	// server is local and the platform tells (Linux); 0 otherwise.
	cpu := func(sd side) time.Duration {
		d, _ := proccpu.Of(int(sd.conn.Conn().PgConn().PID()))
		return d
	}
	const scanSQL = `SELECT count(*), sum(amount) FROM public.invoices`
	const pkSQL = `SELECT id, amount, note FROM public.invoices WHERE id = $1`
	// The sides take turns statement by statement (the order rotating), so
	// that a burst of load from other processes hits every side alike.
	// Within a round, a scan's time is the fastest of 3 per side (load only
	// ever adds time) and a lookup's the median of 60 per side.
	scanOnce := func(sd side) (wall, server time.Duration) {
		c0, start := cpu(sd), time.Now()
		var n, sum int64
		if err := sd.conn.QueryRow(ctx, scanSQL).Scan(&n, &sum); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		if n != sd.rows {
			b.Fatalf("%s: scan saw %d rows, want %d", sd.name, n, sd.rows)
		}
		return d, cpu(sd) - c0
	}
	// The lookups: invoices every principal may see (those of "few").
	lookupOnce := func(sd side, batched bool) (wall, server time.Duration) {
		id := int64(1+rand.IntN(20)) * 197 * 50
		var got int64
		var amount int
		var note string
		c0, start := cpu(sd), time.Now()
		if batched {
			// The per-transaction form: set_config and the query in one
			// batch, one round trip, one implicit transaction.
			batch := &pgx.Batch{}
			batch.Queue(setPrincipalSQL, sd.user, "acme")
			batch.Queue(pkSQL, id)
			br := sd.conn.SendBatch(ctx, batch)
			if _, err := br.Exec(); err != nil {
				b.Fatal(err)
			}
			if err := br.QueryRow().Scan(&got, &amount, &note); err != nil {
				b.Fatalf("%s: batch lookup %d: %v", sd.name, id, err)
			}
			if err := br.Close(); err != nil {
				b.Fatal(err)
			}
		} else if err := sd.conn.QueryRow(ctx, pkSQL, id).Scan(&got, &amount, &note); err != nil {
			b.Fatalf("%s: lookup %d: %v", sd.name, id, err)
		}
		d := time.Since(start)
		return d, cpu(sd) - c0
	}
	type sample struct{ scan, pk, batch, cpuScan, cpuPk []time.Duration }
	measure := func(round int) map[string]*sample {
		m := map[string]*sample{}
		for _, sd := range sides {
			m[sd.name] = &sample{}
		}
		for i := range 60 {
			for k := range sides {
				sd := sides[(i+round+k)%len(sides)]
				x := m[sd.name]
				if i < 3 {
					wall, server := scanOnce(sd)
					x.scan, x.cpuScan = append(x.scan, wall), append(x.cpuScan, server)
				}
				wall, server := lookupOnce(sd, false)
				x.pk, x.cpuPk = append(x.pk, wall), append(x.cpuPk, server)
				if sd.user != "" {
					wall, _ := lookupOnce(sd, true)
					x.batch = append(x.batch, wall)
				}
			}
		}
		return m
	}
	measure(0) // warm every connection: shared buffers, statement caches, plans

	ratios := map[string][]float64{}
	times := map[string][]time.Duration{}
	round := 0
	for b.Loop() {
		m := measure(round)
		round++
		sc, pk, bt := map[string]time.Duration{}, map[string]time.Duration{}, map[string]time.Duration{}
		csc, cpk := map[string]time.Duration{}, map[string]time.Duration{}
		for name, x := range m {
			sc[name], pk[name] = slices.Min(x.scan), medianD(x.pk)
			csc[name], cpk[name] = slices.Min(x.cpuScan), medianD(x.cpuPk)
			if len(x.batch) > 0 {
				bt[name] = medianD(x.batch)
			}
		}
		for _, sd := range sides {
			times["scan-"+sd.name] = append(times["scan-"+sd.name], sc[sd.name])
			times["pk-"+sd.name] = append(times["pk-"+sd.name], pk[sd.name])
			if sd.user == "" {
				continue
			}
			ratios["scan-"+sd.name+"-x"] = append(ratios["scan-"+sd.name+"-x"], float64(sc[sd.name])/float64(sc["plain"]))
			ratios["pk-"+sd.name+"-x"] = append(ratios["pk-"+sd.name+"-x"], float64(pk[sd.name])/float64(pk["plain"]))
			ratios["batch-"+sd.name+"-x"] = append(ratios["batch-"+sd.name+"-x"], float64(bt[sd.name])/float64(pk["plain"]))
			if csc["plain"] > 0 && cpk["plain"] > 0 {
				ratios["cpu-scan-"+sd.name+"-x"] = append(ratios["cpu-scan-"+sd.name+"-x"], float64(csc[sd.name])/float64(csc["plain"]))
				ratios["cpu-pk-"+sd.name+"-x"] = append(ratios["cpu-pk-"+sd.name+"-x"], float64(cpk[sd.name])/float64(cpk["plain"]))
			}
		}
	}
	names := slices.Sorted(maps.Keys(ratios))
	for _, name := range names {
		b.ReportMetric(median(ratios[name]), name)
	}
	// At most 10 lines: the testing package truncates longer benchmark logs.
	var line strings.Builder
	for _, name := range slices.Sorted(maps.Keys(times)) {
		fmt.Fprintf(&line, " %s %v;", name, medianD(times[name]).Round(time.Microsecond))
	}
	b.Logf("%d rounds; median times:%s", round, line.String())
	for _, kind := range []string{"scan-", "pk-", "batch-"} {
		line.Reset()
		for _, name := range names {
			if strings.HasPrefix(name, kind) {
				fmt.Fprintf(&line, " %s %.2f;", name, ratios[name])
			}
		}
		b.Logf("per round:%s", line.String())
	}
}

// checkRLS fails b unless row-level security applies to public.table on
// c exactly when want says so: the policy sides must run under a policy
// (a side whose role bypasses it, the owner's or a superuser's, would see
// every row of "all" and time a plain scan), and the plain side must not.
func checkRLS(b *testing.B, c *pgxpool.Conn, table string, want bool) {
	b.Helper()
	var active bool
	if err := c.QueryRow(context.Background(), `SELECT row_security_active($1::regclass)`, "public."+table).Scan(&active); err != nil {
		b.Fatal(err)
	}
	if active != want {
		b.Fatalf("row-level security on public.%s is active=%v on this side, want %v", table, active, want)
	}
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

// BenchmarkRLSPerRowTrap shows the trap the policy avoids: a policy that
// calls a check function per row (orgperm.can_access(org_id, user, type,
// id)) against protect_table's, whose permission data is computed once per
// statement, on a full scan of 20,000 rows (a tenth of BenchmarkRLS's table:
// the per-row form is that slow) that the principal may all see, in
// alternating rounds. per-row-x and per-statement-x are each form's time
// over the scan without RLS.
//
//	go test -run '^$' -bench BenchmarkRLSPerRowTrap -benchtime 5x ./pkg/membership/
func BenchmarkRLSPerRowTrap(b *testing.B) {
	ctx := context.Background()
	pool := pgtest.NewPool(b)
	role := fmt.Sprintf("orgperm_bench_app_%d", rand.Uint64())
	for _, sql := range []string{
		`INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('acme', 'all')`,
		`INSERT INTO orgperm.data_access (org_id, user_id, resource_type) VALUES ('acme', 'all', 'invoice')`,
		`CREATE TABLE public.per_statement (id bigint PRIMARY KEY, org_id text NOT NULL, amount int NOT NULL)`,
		`INSERT INTO public.per_statement SELECT i, 'acme', i % 1000 FROM generate_series(1, 20000) i`,
		`CREATE TABLE public.per_row (LIKE public.per_statement INCLUDING ALL)`,
		`INSERT INTO public.per_row SELECT * FROM public.per_statement`,
		`VACUUM ANALYZE public.per_statement, public.per_row`,
		`CREATE ROLE ` + role + ` NOLOGIN IN ROLE orgperm_reader`,
		`GRANT SELECT ON public.per_statement, public.per_row TO ` + role,
		`SELECT orgperm.protect_table('public.per_statement', 'org_id', 'id', 'invoice')`,
		`ALTER TABLE public.per_row ENABLE ROW LEVEL SECURITY`,
		`CREATE POLICY per_row ON public.per_row USING (orgperm.can_access(org_id, orgperm.principal_user(), 'invoice', id::text))`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			b.Fatalf("%v\n%s", err, sql)
		}
	}
	b.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), `DROP OWNED BY `+role+`; DROP ROLE `+role); err != nil {
			b.Errorf("dropping role: %v", err)
		}
	})
	conn := func(app bool) *pgxpool.Conn {
		c, err := pool.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Release)
		setup := `SET max_parallel_workers_per_gather = 0`
		if app {
			setup += `; SET ROLE ` + role + `; SELECT set_config('orgperm.org_id', 'acme', false), set_config('orgperm.user_id', 'all', false)`
		}
		if _, err := c.Exec(ctx, setup); err != nil {
			b.Fatal(err)
		}
		return c
	}
	plain, app := conn(false), conn(true)
	checkRLS(b, plain, "per_statement", false)
	checkRLS(b, app, "per_statement", true)
	checkRLS(b, app, "per_row", true)
	scan := func(c *pgxpool.Conn, table string) time.Duration {
		start := time.Now()
		var n int64
		if err := c.QueryRow(ctx, `SELECT count(*) FROM public.`+table).Scan(&n); err != nil || n != 20000 {
			b.Fatalf("%s: %d rows, %v", table, n, err)
		}
		return time.Since(start)
	}
	scan(plain, "per_statement")
	scan(app, "per_statement")
	scan(app, "per_row")
	var rowX, stmtX []float64
	var tPlain, tStmt, tRow []time.Duration
	for b.Loop() {
		p, s, r := scan(plain, "per_statement"), scan(app, "per_statement"), scan(app, "per_row")
		tPlain, tStmt, tRow = append(tPlain, p), append(tStmt, s), append(tRow, r)
		rowX, stmtX = append(rowX, float64(r)/float64(p)), append(stmtX, float64(s)/float64(p))
	}
	b.ReportMetric(median(rowX), "per-row-x")
	b.ReportMetric(median(stmtX), "per-statement-x")
	b.Logf("median times: no RLS %v, per statement %v, per row %v",
		medianD(tPlain).Round(time.Microsecond), medianD(tStmt).Round(time.Microsecond), medianD(tRow).Round(time.Microsecond))
}
