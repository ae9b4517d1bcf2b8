package integration_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/hooks"
	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// fixture: permissions; an org role in o1 (id 1), a system role (id 2), an
// org role in o2 (id 3); members u1, u2 of o1 holding role 1, u1 also the
// system role; u1 a member of o2 holding role 3; a grant to u1 and one to
// role 1.
const fixture = `
INSERT INTO orgperm.permissions (codename) VALUES ('billing.view_invoice'), ('billing.edit_invoice'), ('crm.view_lead');
INSERT INTO orgperm.roles (id, org_id, name) VALUES (1, 'o1', 'admin'), (2, NULL, 'viewer'), (3, 'o2', 'admin');
SELECT setval(pg_get_serial_sequence('orgperm.roles', 'id'), 100);
INSERT INTO orgperm.role_permissions (role_id, codename) VALUES (1, 'billing.edit_invoice'), (2, 'billing.view_invoice'), (3, 'crm.view_lead');
INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o1', 'u1'), ('o1', 'u2'), ('o2', 'u1');
INSERT INTO orgperm.membership_roles (org_id, user_id, role_id) VALUES ('o1', 'u1', 1), ('o1', 'u2', 1), ('o1', 'u1', 2), ('o2', 'u1', 3);
INSERT INTO orgperm.data_access (org_id, user_id, role_id, resource_type, resource_id)
VALUES ('o1', 'u1', NULL, 'invoice', '42'), ('o1', NULL, 1, 'invoice', NULL);
`

// world is a database with the fixture, a pool for the instances, and a
// separate pool for raw SQL writes and reference reads.
type world struct {
	url  string
	pool *pgxpool.Pool // the instances' pool
	raw  *pgxpool.Pool // not the library's: raw SQL, reference reads
}

func newWorld(t *testing.T, s *pgtest.Server) *world {
	t.Helper()
	url := s.NewDatabase(t)
	w := &world{url: url, pool: newPool(t, url), raw: newPool(t, url)}
	if _, err := w.raw.Exec(context.Background(), fixture); err != nil {
		t.Fatal(err)
	}
	return w
}

// truth is the permission set straight from the database.
func (w *world) truth(t *testing.T, org, user string) string {
	t.Helper()
	s, err := membership.NewStore(w.raw).Load(context.Background(), org, user, nowUTC())
	if err != nil {
		t.Fatal(err)
	}
	return fingerprint(s)
}

func covers(inv listener.Invalidation, org, user string) bool {
	return inv.All || slices.Contains(inv.Orgs, org) || slices.Contains(inv.Users, user) ||
		slices.Contains(inv.Members, listener.Member{Org: org, User: user})
}

// TestInstancesSeeRawWrites: four clients share one database; a raw SQL
// write on a separate connection reaches all four once its notification is
// processed, for every table and every scope.
func TestInstancesSeeRawWrites(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		sql       string
		org, user string // the key that must change
	}{
		{"memberships status (member scope)", `UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'o1' AND user_id = 'u2'`, "o1", "u2"},
		{"memberships insert (member scope)", `INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o2', 'u2')`, "o2", "u2"},
		{"memberships delete (member scope)", `DELETE FROM orgperm.memberships WHERE org_id = 'o1' AND user_id = 'u1'`, "o1", "u1"},
		{"memberships bulk (org scope)", `INSERT INTO orgperm.memberships (org_id, user_id) SELECT 'o1', 'bulk-' || g FROM generate_series(1, 100) g;
			UPDATE orgperm.memberships SET status = 'revoked' WHERE org_id = 'o1'`, "o1", "u2"},
		{"membership_roles delete (member scope)", `DELETE FROM orgperm.membership_roles WHERE org_id = 'o1' AND user_id = 'u1' AND role_id = 1`, "o1", "u1"},
		{"membership_roles expiry (member scope)", `UPDATE orgperm.membership_roles SET valid_until = now() - interval '1 second' WHERE user_id = 'u2'`, "o1", "u2"},
		{"data_access user grant (member scope)", `INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id) VALUES ('o1', 'u2', 'report', '9')`, "o1", "u2"},
		{"data_access role grant (org scope)", `INSERT INTO orgperm.data_access (org_id, role_id, resource_type) VALUES ('o1', 1, 'report')`, "o1", "u2"},
		{"role_permissions org role (org scope)", `INSERT INTO orgperm.role_permissions VALUES (1, 'crm.view_lead')`, "o1", "u2"},
		{"roles rename (org scope)", `UPDATE orgperm.roles SET name = 'owner' WHERE id = 1`, "o1", "u2"},
		{"roles delete (org scope)", `DELETE FROM orgperm.roles WHERE id = 1`, "o1", "u2"},
		{"role_permissions system role (everything)", `INSERT INTO orgperm.role_permissions VALUES (2, 'crm.view_lead')`, "o1", "u1"},
		{"permissions delete (everything)", `DELETE FROM orgperm.permissions WHERE codename = 'billing.view_invoice'`, "o1", "u1"},
		{"truncate (everything)", `TRUNCATE orgperm.memberships CASCADE`, "o2", "u1"},
	}
	server := pgtest.Shared(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, server)
			ins := newInstances(t, w.pool, 4)
			ctx := context.Background()
			before := w.truth(t, tc.org, tc.user)
			for _, in := range ins {
				for range 2 {
					s, err := in.c.Permissions(ctx, tc.org, tc.user)
					if err != nil {
						t.Fatal(err)
					}
					if got := fingerprint(s); got != before {
						t.Fatalf("before the write: got %s, want %s", got, before)
					}
				}
				if st := in.c.Stats().Cache; st.Hits == 0 {
					t.Fatalf("second read was not a cache hit: %+v", st)
				}
			}

			raw := rawConn(t, w.url)
			if _, err := raw.Exec(ctx, tc.sql); err != nil {
				t.Fatal(err)
			}
			after := w.truth(t, tc.org, tc.user)
			if after == before {
				t.Fatalf("the write did not change (%s, %s): the case tests nothing", tc.org, tc.user)
			}
			for i, in := range ins {
				in.waitInvalidation("covering the key", func(inv listener.Invalidation) bool { return covers(inv, tc.org, tc.user) })
				s, err := in.c.Permissions(ctx, tc.org, tc.user)
				if err != nil {
					t.Fatal(err)
				}
				if got := fingerprint(s); got != after {
					t.Errorf("instance %d after the write: got %s, want %s", i, got, after)
				}
			}
		})
	}
}

// TestStaleFillNeverLands: rule 1, deterministically. A fill is held after
// its query while another connection commits a change and the notification
// is processed. The stale result goes to that one caller but is not
// stored, and the next read sees the new value.
func TestStaleFillNeverLands(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	var armed atomic.Bool
	loaded := make(chan struct{})
	release := make(chan struct{})
	in := newInstance(t, w.pool, membership.Config{}, hooks.Client{
		AfterLoad: func(string, string) {
			if armed.CompareAndSwap(true, false) {
				close(loaded)
				<-release
			}
		},
	})
	ctx := context.Background()
	before := w.truth(t, "o1", "u2")

	armed.Store(true)
	type result struct {
		s   *membership.PermissionSet
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := in.c.Permissions(ctx, "o1", "u2")
		done <- result{s, err}
	}()
	<-loaded // the fill has read the old state and is held

	if _, err := rawConn(t, w.url).Exec(ctx, `UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'o1' AND user_id = 'u2'`); err != nil {
		t.Fatal(err)
	}
	in.waitInvalidation("for (o1, u2)", func(inv listener.Invalidation) bool { return covers(inv, "o1", "u2") })
	close(release)

	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := fingerprint(r.s); got != before {
		t.Fatalf("the held caller got %s, want the state its query read: %s", got, before)
	}
	st := in.c.Stats().Cache
	if st.StaleFills != 1 || st.Fills != 0 {
		t.Fatalf("stale fill was stored: %+v", st)
	}
	s, err := in.c.Permissions(ctx, "o1", "u2")
	if err != nil {
		t.Fatal(err)
	}
	after := w.truth(t, "o1", "u2")
	if got := fingerprint(s); got != after || s.Active() {
		t.Fatalf("next read: got %s, want %s", got, after)
	}
	if st := in.c.Stats().Cache; st.Loads != 2 {
		t.Fatalf("next read did not reload: %+v", st)
	}
}
