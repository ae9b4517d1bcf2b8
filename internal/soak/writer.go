package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// seed writes version 0 of every component with raw SQL, before any
// instance starts: the permission catalog, rolesPerOrg roles per org, one
// membership per user (each user is a member of one org only, so that a
// user-wide answer is the status of one membership), its role assignments
// and its data grant.
func seed(ctx context.Context, raw *pgxpool.Pool, l *layout) error {
	return pgx.BeginFunc(ctx, raw, func(tx pgx.Tx) error {
		var codes []string
		for r := range rolesPerOrg {
			for b := range permBits {
				codes = append(codes, permCodename(r, b))
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO orgperm.permissions (codename) SELECT unnest($1::text[])`, codes); err != nil {
			return fmt.Errorf("seed permissions: %w", err)
		}
		for o := range l.orgs {
			for r := range rolesPerOrg {
				var id int64
				if err := tx.QueryRow(ctx, `INSERT INTO orgperm.roles (org_id, name) VALUES ($1, $2) RETURNING id`,
					l.orgID(o), roleName(r, 0)).Scan(&id); err != nil {
					return fmt.Errorf("seed roles: %w", err)
				}
				l.roleIDs[o*rolesPerOrg+r] = id
				l.roleByID[id] = o*rolesPerOrg + r
			}
			var users []string
			for u := range l.users {
				users = append(users, l.userID(o, u))
			}
			if _, err := tx.Exec(ctx, `INSERT INTO orgperm.memberships (org_id, user_id, status, valid_until)
				SELECT $1, u, $3, $4 FROM unnest($2::text[]) AS u`, l.orgID(o), users, memberStatus(0), versionTime(0)); err != nil {
				return fmt.Errorf("seed memberships: %w", err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO orgperm.membership_roles (org_id, user_id, role_id, valid_until)
				SELECT $1, u, r, $4 FROM unnest($2::text[]) AS u, unnest($3::bigint[]) AS r`,
				l.orgID(o), users, l.rolesOf(o, assignedRoles(0)), versionTime(0)); err != nil {
				return fmt.Errorf("seed role assignments: %w", err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id)
				SELECT $1, u, $3, $4 FROM unnest($2::text[]) AS u`, l.orgID(o), users, docType, grantID(0)); err != nil {
				return fmt.Errorf("seed data access: %w", err)
			}
		}
		return nil
	})
}

// rolesOf returns the role IDs of org o in mask.
func (l *layout) rolesOf(o int, mask uint8) []int64 {
	var ids []int64
	for r := range rolesPerOrg {
		if mask&(1<<r) != 0 {
			ids = append(ids, l.roleIDs[o*rolesPerOrg+r])
		}
	}
	return ids
}

// writer changes the components of the orgs it owns, with raw SQL on a
// pool that is not the library's. It owns every component of its orgs, so
// each component's versions are committed in order.
type writer struct {
	l     *layout
	raw   *pgxpool.Pool
	vs    *versions
	tl    *timeline
	orgs  []int
	rng   *rand.Rand
	pause *sync.RWMutex // held for reading around each write; Lock quiesces

	writes, errors *atomic.Uint64
}

// writeTimeout bounds one write, which the end of the load does not cancel.
const writeTimeout = 30 * time.Second

// run writes every interval until ctx is done.
func (w *writer) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A write runs to its end even when the load stops. Cancelled
		// mid-flight, it may still commit after the final verification
		// read the database, which then judged a correct cache against an
		// older truth (seen: the database read at version 40, an instance
		// at 41 a moment later) or a lagging one against a newer.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
		w.pause.RLock()
		err := w.writeOne(wctx)
		w.pause.RUnlock()
		cancel()
		switch {
		case err == nil:
			w.writes.Add(1)
		case ctx.Err() != nil:
			return
		default:
			// The server may be restarting: the ticker paces the retries.
			w.errors.Add(1)
		}
	}
}

// begin records that version v of component c is being written, on the
// versions and the commit timeline, and returns a function recording that
// its write returned, committed (ok) or with an error. The instant
// recorded as sent is taken before the write's first statement, so it is
// no later than the COMMIT's.
func (w *writer) begin(c int) (v int64, done func(ok bool)) {
	v = w.vs.begun[c].Add(1)
	w.tl.begin(c, v, w.tl.now())
	return v, func(ok bool) {
		w.tl.end(c, v, w.tl.now(), ok)
		if ok {
			w.vs.committed[c].Store(v)
		}
	}
}

// writeOne makes one write of a random kind to a random component of the
// writer's orgs. Writes to one member are the most common; writes that
// evict a whole org (a bulk membership update, a role renamed or its
// permissions replaced) are 6%, so that the cache still has hits to check.
func (w *writer) writeOne(ctx context.Context) error {
	l := w.l
	o := w.orgs[w.rng.IntN(len(w.orgs))]
	u := w.rng.IntN(l.users)
	k := l.key(o, u)
	org, user := l.orgID(o), l.userID(o, u)
	var (
		err  error
		done func(ok bool)
		v    int64
	)
	switch p := w.rng.IntN(100); {
	case p < 40: // one membership: status and window
		v, done = w.begin(l.memComp(k))
		_, err = w.raw.Exec(ctx, `UPDATE orgperm.memberships SET status = $3, valid_until = $4, updated_at = now()
			WHERE org_id = $1 AND user_id = $2`, org, user, memberStatus(v), versionTime(v))
	case p < 62: // one member's role assignments, replaced
		v, done = w.begin(l.assignComp(k))
		err = pgx.BeginFunc(ctx, w.raw, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `DELETE FROM orgperm.membership_roles WHERE org_id = $1 AND user_id = $2`, org, user); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO orgperm.membership_roles (org_id, user_id, role_id, valid_until)
				SELECT $1, $2, unnest($3::bigint[]), $4`, org, user, l.rolesOf(o, assignedRoles(v)), versionTime(v))
			return err
		})
	case p < 78: // one member's data grant, updated in place
		v, done = w.begin(l.grantComp(k))
		_, err = w.raw.Exec(ctx, `UPDATE orgperm.data_access SET resource_id = $4
			WHERE org_id = $1 AND user_id = $2 AND resource_type = $3`, org, user, docType, grantID(v))
	case p < 94: // one member's data grant, deleted and inserted
		v, done = w.begin(l.grantComp(k))
		err = pgx.BeginFunc(ctx, w.raw, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `DELETE FROM orgperm.data_access WHERE org_id = $1 AND user_id = $2 AND resource_type = $3`, org, user, docType); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id)
				VALUES ($1, $2, $3, $4)`, org, user, docType, grantID(v))
			return err
		})
	case p < 96: // every membership of the org in one statement, collapsed to an org scope
		return w.bulkMemberships(ctx, o)
	case p < 98: // a role renamed
		r := w.rng.IntN(rolesPerOrg)
		v, done = w.begin(l.nameComp(o, r))
		_, err = w.raw.Exec(ctx, `UPDATE orgperm.roles SET name = $2 WHERE id = $1`, l.roleIDs[o*rolesPerOrg+r], roleName(r, v))
	default: // a role's permissions replaced
		r := w.rng.IntN(rolesPerOrg)
		v, done = w.begin(l.permComp(o, r))
		id := l.roleIDs[o*rolesPerOrg+r]
		err = pgx.BeginFunc(ctx, w.raw, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `DELETE FROM orgperm.role_permissions WHERE role_id = $1`, id); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO orgperm.role_permissions (role_id, codename) SELECT $1, unnest($2::text[])`,
				id, rolePermissions(r, v))
			return err
		})
	}
	done(err == nil)
	return err
}

// bulkMemberships bumps the membership version of every user of org o in
// one UPDATE, with orgperm.notify_max_users lowered for the transaction so
// that the statement's notification collapses to the org scope.
func (w *writer) bulkMemberships(ctx context.Context, o int) error {
	l := w.l
	users := make([]string, l.users)
	statuses := make([]string, l.users)
	until := make([]time.Time, l.users)
	dones := make([]func(bool), l.users)
	for u := range l.users {
		v, done := w.begin(l.memComp(l.key(o, u)))
		users[u], statuses[u], until[u], dones[u] = l.userID(o, u), string(memberStatus(v)), versionTime(v), done
	}
	err := pgx.BeginFunc(ctx, w.raw, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('orgperm.notify_max_users', $1, true)`, strconv.Itoa(max(1, l.users/4))); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE orgperm.memberships AS m SET status = x.status, valid_until = x.until, updated_at = now()
			FROM unnest($2::text[], $3::text[], $4::timestamptz[]) AS x(user_id, status, until)
			WHERE m.org_id = $1 AND m.user_id = x.user_id`, l.orgID(o), users, statuses, until)
		return err
	})
	for _, done := range dones {
		done(err == nil)
	}
	return err
}
