package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// auditRow is an audit entry reduced to what a test compares.
type auditRow struct {
	Table, Op, Org, User, Key, Old, New, Actor string
}

func (r auditRow) String() string {
	return fmt.Sprintf("%s %s org=%s user=%s key=%s old=%s new=%s actor=%q", r.Op, r.Table, r.Org, r.User, r.Key, r.Old, r.New, r.Actor)
}

// canon re-encodes a JSON value with sorted keys ("" for none).
func canon(t *testing.T, b []byte) string {
	t.Helper()
	if b == nil {
		return ""
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// auditSince returns the audit rows with an ID above after, oldest first.
func auditSince(t *testing.T, pool *pgxpool.Pool, after int64) []auditRow {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT table_name, operation, coalesce(org_id, ''), coalesce(user_id, ''), row_key, old_values, new_values, coalesce(actor, '')
		FROM orgperm.audit_log WHERE id > $1 ORDER BY id`, after)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var (
			r             auditRow
			key, old, new []byte
		)
		if err := rows.Scan(&r.Table, &r.Op, &r.Org, &r.User, &key, &old, &new, &r.Actor); err != nil {
			t.Fatal(err)
		}
		r.Key, r.Old, r.New = canon(t, key), canon(t, old), canon(t, new)
		out = append(out, r)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	return out
}

func lastAuditID(t *testing.T, pool *pgxpool.Pool) int64 {
	t.Helper()
	var id int64
	must(t, pool.QueryRow(context.Background(), `SELECT coalesce(max(id), 0) FROM orgperm.audit_log`).Scan(&id))
	return id
}

func expectAudit(t *testing.T, what string, got []auditRow, want ...auditRow) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d audit rows, want %d:\n%v", what, len(got), len(want), got)
		return
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s: audit row %d\n got %v\nwant %v", what, i, got[i], want[i])
		}
	}
}

const member = `{"org_id":"acme","user_id":"alice"}`

func TestAuditWrites(t *testing.T) {
	t.Parallel()
	e := setupAdmin(t)
	ctx := context.Background()
	pool := e.plain

	// Through the library, with an actor.
	mark := lastAuditID(t, pool)
	must(t, e.store.AddMember(WithActor(ctx, "admin:1"), "acme", "alice", MemberOptions{}))
	expectAudit(t, "library", auditSince(t, pool, mark), auditRow{
		Table: "memberships", Op: "INSERT", Org: "acme", User: "alice", Key: member,
		New:   `{"org_id":"acme","status":"active","user_id":"alice","valid_from":null,"valid_until":null}`,
		Actor: "admin:1",
	})

	// Raw SQL with the setting.
	mark = lastAuditID(t, pool)
	tx, err := pool.Begin(ctx)
	must(t, err)
	_, err = tx.Exec(ctx, `SELECT set_config('orgperm.actor', 'script:7', true)`)
	must(t, err)
	_, err = tx.Exec(ctx, `UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'acme' AND user_id = 'alice'`)
	must(t, err)
	must(t, tx.Commit(ctx))
	expectAudit(t, "raw SQL with the setting", auditSince(t, pool, mark), auditRow{
		Table: "memberships", Op: "UPDATE", Org: "acme", User: "alice", Key: member,
		Old:   `{"org_id":"acme","status":"active","user_id":"alice","valid_from":null,"valid_until":null}`,
		New:   `{"org_id":"acme","status":"suspended","user_id":"alice","valid_from":null,"valid_until":null}`,
		Actor: "script:7",
	})

	// The setting is transaction-local: the next transaction has none.
	// Raw SQL without it: no actor. An UPDATE that changes nothing
	// audited records nothing.
	mark = lastAuditID(t, pool)
	_, err = pool.Exec(ctx, `UPDATE orgperm.memberships SET status = status, updated_at = now()`)
	must(t, err)
	_, err = pool.Exec(ctx, `DELETE FROM orgperm.memberships WHERE org_id = 'acme'`)
	must(t, err)
	expectAudit(t, "raw SQL without the setting", auditSince(t, pool, mark), auditRow{
		Table: "memberships", Op: "DELETE", Org: "acme", User: "alice", Key: member,
		Old: `{"org_id":"acme","status":"suspended","user_id":"alice","valid_from":null,"valid_until":null}`,
	})

	// Every table, through the library: the rows and keys of each.
	mark = lastAuditID(t, pool)
	actx := WithActor(ctx, "admin:2")
	_, err = e.store.EnsurePermissions(actx, Permission{"app.edit", "Edit"})
	must(t, err)
	role, _, err := e.store.EnsureRole(actx, "acme", "editor", []string{"app.edit"})
	must(t, err)
	must(t, e.store.AddMember(actx, "acme", "bob", MemberOptions{}))
	must(t, e.store.AssignRole(actx, "acme", "bob", role, nil))
	grant, err := e.store.GrantDataAccess(actx, "acme", RoleSubject(role), "invoice", "")
	must(t, err)
	must(t, e.store.DeleteRole(actx, role))
	r, g := fmt.Sprint(role), fmt.Sprint(grant)
	roleJSON := `{"description":"","id":` + r + `,"name":"editor","org_id":"acme"}`
	grantJSON := `{"id":` + g + `,"org_id":"acme","resource_id":null,"resource_type":"invoice","role_id":` + r + `,"user_id":null}`
	bob := `{"org_id":"acme","role_id":` + r + `,"user_id":"bob"}`
	got := auditSince(t, pool, mark)
	// DeleteRole cascades: the order of the cascaded deletes is the
	// server's; compare the last four as a set.
	if len(got) == 10 {
		tail := got[6:]
		for i := range tail {
			for j := i + 1; j < len(tail); j++ {
				if tail[j].Table < tail[i].Table {
					tail[i], tail[j] = tail[j], tail[i]
				}
			}
		}
	}
	expectAudit(t, "every table", got,
		auditRow{Table: "permissions", Op: "INSERT", Key: `{"codename":"app.edit"}`, New: `{"codename":"app.edit","description":"Edit"}`, Actor: "admin:2"},
		auditRow{Table: "roles", Op: "INSERT", Org: "acme", Key: `{"id":` + r + `}`, New: roleJSON, Actor: "admin:2"},
		auditRow{Table: "role_permissions", Op: "INSERT", Org: "acme", Key: `{"codename":"app.edit","role_id":` + r + `}`,
			New: `{"codename":"app.edit","role_id":` + r + `}`, Actor: "admin:2"},
		auditRow{Table: "memberships", Op: "INSERT", Org: "acme", User: "bob", Key: `{"org_id":"acme","user_id":"bob"}`,
			New: `{"org_id":"acme","status":"active","user_id":"bob","valid_from":null,"valid_until":null}`, Actor: "admin:2"},
		auditRow{Table: "membership_roles", Op: "INSERT", Org: "acme", User: "bob", Key: bob,
			New: `{"org_id":"acme","role_id":` + r + `,"user_id":"bob","valid_until":null}`, Actor: "admin:2"},
		auditRow{Table: "data_access", Op: "INSERT", Org: "acme", Key: `{"id":` + g + `}`, New: grantJSON, Actor: "admin:2"},
		auditRow{Table: "data_access", Op: "DELETE", Org: "acme", Key: `{"id":` + g + `}`, Old: grantJSON, Actor: "admin:2"},
		auditRow{Table: "membership_roles", Op: "DELETE", Org: "acme", User: "bob", Key: bob,
			Old: `{"org_id":"acme","role_id":` + r + `,"user_id":"bob","valid_until":null}`, Actor: "admin:2"},
		// The role is gone when its cascaded permissions are recorded:
		// no org.
		auditRow{Table: "role_permissions", Op: "DELETE", Key: `{"codename":"app.edit","role_id":` + r + `}`,
			Old: `{"codename":"app.edit","role_id":` + r + `}`, Actor: "admin:2"},
		auditRow{Table: "roles", Op: "DELETE", Org: "acme", Key: `{"id":` + r + `}`, Old: roleJSON, Actor: "admin:2"},
	)

	// A rolled-back transaction leaves nothing.
	mark = lastAuditID(t, pool)
	tx, err = pool.Begin(ctx)
	must(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('acme', 'ghost')`)
	must(t, err)
	must(t, tx.Rollback(ctx))
	// A failed write through the library leaves nothing either.
	if err := e.store.AssignRole(WithActor(ctx, "admin:3"), "acme", "nobody", 999999, nil); err == nil {
		t.Error("AssignRole of a non-member: no error")
	}
	expectAudit(t, "rolled back", auditSince(t, pool, mark))

	// An invalid actor fails the write: nothing is written.
	if err := e.store.AddMember(WithActor(ctx, "bad\nactor"), "acme", "carol", MemberOptions{}); !errors.Is(err, ErrInvalidActor) {
		t.Errorf("invalid actor: %v", err)
	}
	expectAudit(t, "invalid actor", auditSince(t, pool, mark))
}

// The database role recorded is the one the session acts as, though the
// trigger function runs as its owner.
func TestAuditDatabaseRole(t *testing.T) {
	t.Parallel()
	e := setupAdmin(t)
	ctx := context.Background()
	pool := e.plain
	role := fmt.Sprintf("orgperm_writer_%d", os.Getpid()^int(time.Now().UnixNano()&0xffffff))
	if _, err := pool.Exec(ctx, `CREATE ROLE `+role); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" {
			t.Skip("the test database's user may not create roles")
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), `DROP OWNED BY `+role)
		_, _ = pool.Exec(context.Background(), `DROP ROLE `+role)
	})
	_, err := pool.Exec(ctx, `GRANT USAGE ON SCHEMA orgperm TO `+role+`;
		GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA orgperm TO `+role+`;
		REVOKE ALL ON orgperm.audit_log FROM `+role)
	must(t, err)
	var me string
	must(t, pool.QueryRow(ctx, `SELECT current_user`).Scan(&me))

	mark := lastAuditID(t, pool)
	tx, err := pool.Begin(ctx)
	must(t, err)
	_, err = tx.Exec(ctx, `SET LOCAL ROLE `+role)
	must(t, err)
	// The writer has no right on the audit table, yet its write is
	// recorded (SECURITY DEFINER), and it cannot read or forge history.
	_, err = tx.Exec(ctx, `INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('acme', 'zoe')`)
	must(t, err)
	_, err = tx.Exec(ctx, `SAVEPOINT s`)
	must(t, err)
	if _, err := tx.Exec(ctx, `INSERT INTO orgperm.audit_log (at, txid, table_name, operation, db_user) VALUES (now(), 0, 'x', 'INSERT', 'x')`); err == nil {
		t.Error("the writer could insert into orgperm.audit_log")
	}
	_, err = tx.Exec(ctx, `ROLLBACK TO SAVEPOINT s`)
	must(t, err)
	must(t, tx.Commit(ctx))
	_, err = pool.Exec(ctx, `INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('acme', 'yan')`)
	must(t, err)

	rows, err := pool.Query(ctx, `SELECT user_id, db_user FROM orgperm.audit_log WHERE id > $1 ORDER BY id`, mark)
	must(t, err)
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var u, who string
		err := r.Scan(&u, &who)
		return u + "=" + who, err
	})
	must(t, err)
	if want := "zoe=" + role + ",yan=" + me; strings.Join(got, ",") != want {
		t.Errorf("db_user: %v, want %s", got, want)
	}

	// The trigger functions run as their owner with a pinned search_path.
	var secdef bool
	var config []string
	must(t, pool.QueryRow(ctx, `SELECT prosecdef, proconfig FROM pg_proc WHERE oid = 'orgperm.audit_changes'::regproc`).Scan(&secdef, &config))
	if !secdef || strings.Join(config, ",") != "search_path=pg_catalog, pg_temp" {
		t.Errorf("audit_changes: SECURITY DEFINER %v, config %v", secdef, config)
	}
}

// A bulk UPDATE of 50,000 memberships: 50,000 rows, one statement's time
// and transaction; the invalidation still sends one notification.
func TestAuditBulkAndTruncate(t *testing.T) {
	t.Parallel()
	e := setupAdmin(t)
	ctx := context.Background()
	pool := e.plain
	n := int64(50_000)
	if testing.Short() {
		n = 5_000 // still one statement, one timestamp, one txid
	}
	_, err := pool.Exec(ctx, `INSERT INTO orgperm.memberships (org_id, user_id) SELECT 'bulk', 'u' || g FROM generate_series(1, $1) g`, n)
	must(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO orgperm.roles (org_id, name) VALUES ('bulk', 'r');
		INSERT INTO orgperm.membership_roles (org_id, user_id, role_id) SELECT 'bulk', 'u' || g, (SELECT id FROM orgperm.roles WHERE name = 'r') FROM generate_series(1, 10) g`)
	must(t, err)
	notes := listen(t, pool)

	mark := lastAuditID(t, pool)
	tx, err := pool.Begin(ctx)
	must(t, err)
	_, err = tx.Exec(ctx, `SELECT set_config('orgperm.actor', 'bulk-job', true)`)
	must(t, err)
	tag, err := tx.Exec(ctx, `UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'bulk'`)
	must(t, err)
	must(t, tx.Commit(ctx))
	if tag.RowsAffected() != n {
		t.Fatalf("updated %d", tag.RowsAffected())
	}
	var rows, users, stamps, txids, right int64
	must(t, pool.QueryRow(ctx, `
		SELECT count(*), count(DISTINCT user_id), count(DISTINCT at), count(DISTINCT txid),
		       count(*) FILTER (WHERE table_name = 'memberships' AND operation = 'UPDATE' AND org_id = 'bulk'
		           AND actor = 'bulk-job' AND old_values ->> 'status' = 'active' AND new_values ->> 'status' = 'suspended'
		           AND row_key = jsonb_build_object('org_id', 'bulk', 'user_id', user_id))
		FROM orgperm.audit_log WHERE id > $1`, mark).Scan(&rows, &users, &stamps, &txids, &right))
	if rows != n || users != n || stamps != 1 || txids != 1 || right != n {
		t.Errorf("bulk UPDATE: %d rows, %d users, %d times, %d transactions, %d as expected; want %d, %d, 1, 1, %d",
			rows, users, stamps, txids, right, n, n, n)
	}
	if got := notes.take(t); len(got) != 1 || got[0] != `{"v":1,"t":"memberships","orgs":["bulk"]}` {
		t.Errorf("bulk UPDATE: notifications %v, want one for the org", got)
	}

	// TRUNCATE: one row per table truncated (the cascade included), no
	// row data.
	mark = lastAuditID(t, pool)
	_, err = pool.Exec(ctx, `TRUNCATE orgperm.memberships CASCADE`)
	must(t, err)
	got := auditSince(t, pool, mark)
	if len(got) == 2 && got[0].Table > got[1].Table {
		got[0], got[1] = got[1], got[0]
	}
	expectAudit(t, "TRUNCATE", got,
		auditRow{Table: "membership_roles", Op: "TRUNCATE"},
		auditRow{Table: "memberships", Op: "TRUNCATE"})
}

func TestAuditHistory(t *testing.T) {
	t.Parallel()
	e := setupAdmin(t)
	ctx := context.Background()
	a1, a2 := WithActor(ctx, "admin:1"), WithActor(ctx, "admin:2")
	must(t, e.store.AddMember(a1, "acme", "alice", MemberOptions{}))
	must(t, e.store.AddMember(a2, "acme", "bob", MemberOptions{}))
	must(t, e.store.SuspendMember(a1, "acme", "alice"))
	must(t, e.store.AddMember(a1, "globex", "alice", MemberOptions{}))
	must(t, e.store.RevokeMember(ctx, "acme", "alice"))

	describe := func(es []AuditEntry) string {
		var s []string
		for _, x := range es {
			s = append(s, x.Org+"/"+x.User+"/"+x.Operation+"/"+x.Actor)
		}
		return strings.Join(s, " ")
	}
	all := func(q AuditQuery) []AuditEntry {
		t.Helper()
		return pages(t, func(c string) (Page[AuditEntry], error) {
			q.Cursor, q.Limit = c, 2
			return e.store.AuditHistory(ctx, q)
		})
	}
	for _, c := range []struct {
		q    AuditQuery
		want string
	}{
		{AuditQuery{Org: "acme", User: "alice"}, "acme/alice/UPDATE/ acme/alice/UPDATE/admin:1 acme/alice/INSERT/admin:1"},
		{AuditQuery{Org: "acme"}, "acme/alice/UPDATE/ acme/alice/UPDATE/admin:1 acme/bob/INSERT/admin:2 acme/alice/INSERT/admin:1"},
		{AuditQuery{Actor: "admin:1"}, "globex/alice/INSERT/admin:1 acme/alice/UPDATE/admin:1 acme/alice/INSERT/admin:1"},
		{AuditQuery{Actor: "admin:1", Org: "globex"}, "globex/alice/INSERT/admin:1"},
		{AuditQuery{Actor: "nobody"}, ""},
	} {
		got := all(c.q)
		if d := describe(got); d != c.want {
			t.Errorf("AuditHistory(%+v) = %s\nwant %s", c.q, d, c.want)
		}
		for i := 1; i < len(got); i++ {
			if got[i].ID >= got[i-1].ID || got[i].At.After(got[i-1].At) {
				t.Errorf("AuditHistory(%+v): not newest first", c.q)
			}
		}
	}
	first := all(AuditQuery{Org: "acme", User: "alice"})[0]
	if first.Table != "memberships" || first.DBUser == "" || first.TxID == 0 || first.At.IsZero() ||
		canon(t, first.Key) != member || !strings.Contains(string(first.Old), `"suspended"`) || !strings.Contains(string(first.New), `"revoked"`) {
		t.Errorf("newest entry: %+v", first)
	}

	calls := e.tracer.n.Load()
	for _, c := range []struct {
		q    AuditQuery
		want error
	}{
		{AuditQuery{}, ErrInvalidID},
		{AuditQuery{User: "alice"}, ErrInvalidID},
		{AuditQuery{Org: "acme", User: "a\x00"}, ErrInvalidID},
		{AuditQuery{Actor: strings.Repeat("a", 300)}, ErrInvalidActor},
		{AuditQuery{Org: "acme", ListOptions: ListOptions{Cursor: encodeCursor(curMembers, "x")}}, ErrInvalidCursor},
		{AuditQuery{Org: "acme", ListOptions: ListOptions{Cursor: encodeCursor(curAudit, "-4")}}, ErrInvalidCursor},
	} {
		if _, err := e.store.AuditHistory(ctx, c.q); !errors.Is(err, c.want) {
			t.Errorf("AuditHistory(%+v): %v, want %v", c.q, err, c.want)
		}
	}
	if e.tracer.n.Load() != calls {
		t.Error("bad input reached the database")
	}
}

func TestPruneAudit(t *testing.T) {
	t.Parallel()
	e := setupAdmin(t)
	ctx := context.Background()
	for _, u := range []string{"a", "b", "c"} {
		must(t, e.store.AddMember(ctx, "acme", u, MemberOptions{}))
	}
	// Age two entries by the database's clock.
	_, err := e.plain.Exec(ctx, `UPDATE orgperm.audit_log SET at = now() - interval '40 days' WHERE user_id IN ('a', 'b')`)
	must(t, err)
	n, err := e.store.PruneAudit(ctx, 30*24*time.Hour)
	if err != nil || n != 2 {
		t.Fatalf("PruneAudit(30d) = %d, %v; want 2", n, err)
	}
	n, err = e.store.PruneAudit(ctx, 30*24*time.Hour)
	if err != nil || n != 0 {
		t.Fatalf("again: %d, %v; want 0", n, err)
	}
	p, err := e.store.AuditHistory(ctx, AuditQuery{Org: "acme"})
	must(t, err)
	if len(p.Items) != 1 || p.Items[0].User != "c" {
		t.Errorf("left: %+v", p.Items)
	}
	for _, d := range []time.Duration{0, -time.Hour} {
		if _, err := e.store.PruneAudit(ctx, d); !errors.Is(err, ErrInvalidRetention) {
			t.Errorf("PruneAudit(%v): %v", d, err)
		}
	}
	if _, err := e.plain.Exec(ctx, `SELECT orgperm.prune_audit(interval '-1 day')`); err == nil {
		t.Error("prune_audit(-1 day): no error")
	}
}

// sql/audit.sql is the readable source; the migration installs exactly it.
func TestAuditSQLMatchesMigration(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("../../sql/audit.sql")
	must(t, err)
	mig, err := os.ReadFile("../../migrations/00005_audit.sql")
	must(t, err)
	m := string(mig)
	up, down := strings.Index(m, "-- +goose Up\n"), strings.Index(m, "-- +goose Down")
	if up < 0 || down < up {
		t.Fatal("00005_audit.sql: no Up and Down sections")
	}
	if got := strings.TrimSpace(m[up+len("-- +goose Up\n") : down]); got != strings.TrimSpace(string(src)) {
		t.Error("migrations/00005_audit.sql's Up section differs from sql/audit.sql: copy sql/audit.sql into it")
	}
}
