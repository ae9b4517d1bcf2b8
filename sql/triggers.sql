-- orgperm invalidation triggers: the one readable source of truth for what
-- emits NOTIFY. migrations/00002_triggers.sql installs exactly these
-- definitions (TestTriggersMatchMigration fails if the two drift apart; run
-- `make generate` after editing this file).
--
-- Protocol (version 1). Channel: orgperm_invalidate. Payload: one JSON object,
-- always under 8000 bytes:
--
--   {"v":1,"t":"<source>","all":true}                   everything
--   {"v":1,"t":"<source>","orgs":["o1","o2"]}           every key of these orgs
--   {"v":1,"t":"<source>","members":[["o1","u1"]]}      these (org, user) keys
--   {"v":1,"t":"<source>","users":["u1"]}               every key of these users
--
-- <source> is the table whose statement caused it, or "evict" for the
-- orgperm.evict_* functions. A payload only ever removes; it never carries
-- permission data.
--
-- Triggers are statement-level with transition tables: one statement sends
-- one notification per scope, never one per row. A statement that touches
-- more than orgperm.notify_max_users users of one org (default 50) collapses
-- to that org; one that touches more than orgperm.notify_max_orgs orgs
-- (default 100) collapses to everything. Both are ordinary settings
-- (SET orgperm.notify_max_users = 200). Lists too long for one payload are
-- split over several, each under 8000 bytes; lists that would need more than
-- four payloads collapse too (pairs to their orgs, orgs to everything), so a
-- statement sends a handful of notifications at most. PostgreSQL sends nothing for a
-- transaction that rolls back, and folds identical payloads of one
-- transaction into one.

-- orgperm.emit sends the payloads for one statement: scope everything, or
-- the orgs in orgs plus the (member_orgs[i], member_users[i]) pairs plus the
-- users in users, collapsed and split as described above.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION orgperm.emit(
    source text,
    everything boolean,
    orgs text[] DEFAULT NULL,
    member_orgs text[] DEFAULT NULL,
    member_users text[] DEFAULT NULL,
    users text[] DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    max_users constant int := coalesce(nullif(current_setting('orgperm.notify_max_users', true), '')::int, 50);
    max_orgs  constant int := coalesce(nullif(current_setting('orgperm.notify_max_orgs', true), '')::int, 100);
    -- At most this many bytes of list per scope kind: a handful of payloads.
    budget    constant int := 4 * 7800;
    head      constant text := '{"v":1,"t":' || to_json(source)::text;
    org_list  text[];
    pair_list text[];
    user_list text[];
BEGIN
    IF NOT everything AND orgs IS NULL AND users IS NULL AND cardinality(member_orgs) >= 1
       AND member_orgs[1] = ALL (member_orgs) AND member_users[1] = ALL (member_users) THEN
        -- Fast path for the common single-row write: one pair (an UPDATE
        -- lists it twice, old and new). Simple expressions, no query.
        PERFORM pg_notify('orgperm_invalidate',
            head || ',"members":[[' || to_json(member_orgs[1])::text || ',' || to_json(member_users[1])::text || ']]}');
        RETURN;
    END IF;
    IF NOT everything THEN
        -- Distinct pairs; an org with too many of them becomes an org scope.
        WITH pairs AS (
            SELECT DISTINCT p.o, p.u FROM unnest(member_orgs, member_users) AS p(o, u)
            WHERE p.o IS NOT NULL AND p.u IS NOT NULL
        ), big AS (
            SELECT p.o FROM pairs p GROUP BY p.o HAVING count(*) > max_users
        ), scope_orgs AS (
            SELECT x.o FROM unnest(orgs) AS x(o) WHERE x.o IS NOT NULL
            UNION
            SELECT b.o FROM big b
        )
        SELECT
            (SELECT array_agg(to_json(s.o)::text ORDER BY s.o) FROM scope_orgs s),
            (SELECT array_agg('[' || to_json(p.o)::text || ',' || to_json(p.u)::text || ']' ORDER BY p.o, p.u)
               FROM pairs p WHERE NOT EXISTS (SELECT FROM scope_orgs s WHERE s.o = p.o))
        INTO org_list, pair_list;

        IF users IS NOT NULL THEN
            SELECT array_agg(to_json(x.u)::text ORDER BY x.u) INTO user_list
            FROM (SELECT DISTINCT y.u FROM unnest(users) AS y(u) WHERE y.u IS NOT NULL) x;
        END IF;

        IF (SELECT count(DISTINCT o) FROM (
                SELECT unnest(orgs) AS o
                UNION ALL SELECT unnest(member_orgs)
            ) t WHERE o IS NOT NULL) > max_orgs THEN
            everything := true;
        ELSIF orgperm.list_bytes(pair_list) > budget THEN
            -- Too many pairs for a handful of payloads: their orgs instead.
            SELECT array_agg(DISTINCT j ORDER BY j) INTO org_list FROM (
                SELECT unnest(org_list) AS j
                UNION SELECT to_json(p.o)::text FROM unnest(member_orgs) AS p(o) WHERE p.o IS NOT NULL
            ) x;
            pair_list := NULL;
        END IF;
        IF orgperm.list_bytes(org_list) > budget OR orgperm.list_bytes(user_list) > budget THEN
            everything := true;
        END IF;
    END IF;

    IF everything THEN
        PERFORM pg_notify('orgperm_invalidate', head || ',"all":true}');
        RETURN;
    END IF;

    PERFORM orgperm.emit_chunks(head || ',"orgs":[', org_list);
    PERFORM orgperm.emit_chunks(head || ',"members":[', pair_list);
    PERFORM orgperm.emit_chunks(head || ',"users":[', user_list);
END
$$;
-- +goose StatementEnd

-- orgperm.list_bytes is the size of elements joined with commas.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION orgperm.list_bytes(elements text[]) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(sum(octet_length(e) + 1), 0) FROM unnest(elements) AS e;
$$;
-- +goose StatementEnd

-- orgperm.emit_chunks sends prefix || elements || ']}' as few times as it
-- takes to keep every payload under 8000 bytes. An element is at most ~520
-- bytes (two 128-byte IDs, JSON-escaped), so every payload holds at least one.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION orgperm.emit_chunks(prefix text, elements text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    max_bytes constant int := 7900;
    buf  text := '';
    elem text;
BEGIN
    IF elements IS NULL THEN
        RETURN;
    END IF;
    FOREACH elem IN ARRAY elements LOOP
        IF buf <> '' AND octet_length(prefix) + octet_length(buf) + octet_length(elem) + 3 > max_bytes THEN
            PERFORM pg_notify('orgperm_invalidate', prefix || buf || ']}');
            buf := '';
        END IF;
        buf := CASE WHEN buf = '' THEN elem ELSE buf || ',' || elem END;
    END LOOP;
    IF buf <> '' THEN
        PERFORM pg_notify('orgperm_invalidate', prefix || buf || ']}');
    END IF;
END
$$;
-- +goose StatementEnd

-- The scope of a role: its org, or everything for a system role (offered in
-- every org). Roles that no longer exist are skipped: their deletion sent
-- its own notification.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION orgperm.emit_roles(source text, role_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    system_role boolean;
    org_ids text[];
BEGIN
    SELECT coalesce(bool_or(r.org_id IS NULL), false), array_agg(DISTINCT r.org_id) FILTER (WHERE r.org_id IS NOT NULL)
      INTO system_role, org_ids
      FROM orgperm.roles r WHERE r.id = ANY (role_ids);
    IF system_role THEN
        PERFORM orgperm.emit(source, true);
    ELSIF org_ids IS NOT NULL THEN
        PERFORM orgperm.emit(source, false, org_ids);
    END IF;
END
$$;
-- +goose StatementEnd

-- TRUNCATE of any orgperm table: everything.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION orgperm.notify_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM orgperm.emit(TG_TABLE_NAME, true);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- permissions: a new codename is in no role yet, so INSERT changes nothing.
-- A renamed or deleted codename changes every set that holds it: everything.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION orgperm.notify_permissions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF EXISTS (SELECT FROM old_rows) THEN
            PERFORM orgperm.emit(TG_TABLE_NAME, true);
        END IF;
    ELSIF EXISTS (SELECT codename FROM old_rows EXCEPT SELECT codename FROM new_rows) THEN
        PERFORM orgperm.emit(TG_TABLE_NAME, true);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- roles: a new role has no holders and no permissions, so INSERT changes
-- nothing. A rename or deletion changes its org (everything for a system role).
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION orgperm.notify_roles() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    system_role boolean;
    org_ids text[];
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT coalesce(bool_or(r.org_id IS NULL), false), array_agg(DISTINCT r.org_id) FILTER (WHERE r.org_id IS NOT NULL)
          INTO system_role, org_ids FROM old_rows r;
    ELSE
        SELECT coalesce(bool_or(d.org_id IS NULL), false), array_agg(DISTINCT d.org_id) FILTER (WHERE d.org_id IS NOT NULL)
          INTO system_role, org_ids
          FROM (SELECT id, org_id, name FROM old_rows EXCEPT SELECT id, org_id, name FROM new_rows) d;
    END IF;
    IF system_role THEN
        PERFORM orgperm.emit(TG_TABLE_NAME, true);
    ELSIF org_ids IS NOT NULL THEN
        PERFORM orgperm.emit(TG_TABLE_NAME, false, org_ids);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- role_permissions: the role's org, or everything for a system role.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION orgperm.notify_role_permissions() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    role_ids bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT role_id) INTO role_ids FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT role_id) INTO role_ids FROM old_rows;
    ELSE
        SELECT array_agg(DISTINCT d.role_id) INTO role_ids FROM (
            (SELECT role_id, codename FROM old_rows EXCEPT SELECT role_id, codename FROM new_rows)
            UNION
            (SELECT role_id, codename FROM new_rows EXCEPT SELECT role_id, codename FROM old_rows)
        ) d;
    END IF;
    IF role_ids IS NOT NULL THEN
        PERFORM orgperm.emit_roles(TG_TABLE_NAME, role_ids);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- memberships: the (org, user) pairs whose status or window changed.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION orgperm.notify_memberships() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    o text[];
    u text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(org_id), array_agg(user_id) INTO o, u FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(org_id), array_agg(user_id) INTO o, u FROM old_rows;
    ELSE
        SELECT array_agg(d.org_id), array_agg(d.user_id) INTO o, u FROM (
            (SELECT org_id, user_id, status, valid_from, valid_until FROM old_rows
             EXCEPT SELECT org_id, user_id, status, valid_from, valid_until FROM new_rows)
            UNION ALL
            (SELECT org_id, user_id, status, valid_from, valid_until FROM new_rows
             EXCEPT SELECT org_id, user_id, status, valid_from, valid_until FROM old_rows)
        ) d;
    END IF;
    IF o IS NOT NULL THEN
        PERFORM orgperm.emit(TG_TABLE_NAME, false, NULL, o, u);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- membership_roles: the (org, user) pairs whose roles changed. Rows removed
-- by a cascade from a deleted membership or role are skipped: that deletion
-- sent its own, wider notification.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION orgperm.notify_membership_roles() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    o text[];
    u text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(org_id), array_agg(user_id) INTO o, u FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(d.org_id), array_agg(d.user_id) INTO o, u FROM old_rows d
         WHERE EXISTS (SELECT FROM orgperm.memberships m WHERE m.org_id = d.org_id AND m.user_id = d.user_id)
           AND EXISTS (SELECT FROM orgperm.roles r WHERE r.id = d.role_id);
    ELSE
        SELECT array_agg(d.org_id), array_agg(d.user_id) INTO o, u FROM (
            (SELECT org_id, user_id, role_id, valid_until FROM old_rows
             EXCEPT SELECT org_id, user_id, role_id, valid_until FROM new_rows)
            UNION ALL
            (SELECT org_id, user_id, role_id, valid_until FROM new_rows
             EXCEPT SELECT org_id, user_id, role_id, valid_until FROM old_rows)
        ) d;
    END IF;
    IF o IS NOT NULL THEN
        PERFORM orgperm.emit(TG_TABLE_NAME, false, NULL, o, u);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- data_access: a grant to a user changes (org, user); a grant to a role
-- changes the org (the role's holders). Rows removed by a cascade from a
-- deleted role are skipped: that deletion sent its own notification.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION orgperm.notify_data_access() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    role_orgs text[];
    o text[];
    u text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT d.org_id) FILTER (WHERE d.role_id IS NOT NULL),
               array_agg(d.org_id) FILTER (WHERE d.user_id IS NOT NULL),
               array_agg(d.user_id) FILTER (WHERE d.user_id IS NOT NULL)
          INTO role_orgs, o, u FROM new_rows d;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT d.org_id) FILTER (WHERE d.role_id IS NOT NULL),
               array_agg(d.org_id) FILTER (WHERE d.user_id IS NOT NULL),
               array_agg(d.user_id) FILTER (WHERE d.user_id IS NOT NULL)
          INTO role_orgs, o, u FROM old_rows d
         WHERE d.role_id IS NULL OR EXISTS (SELECT FROM orgperm.roles r WHERE r.id = d.role_id);
    ELSE
        SELECT array_agg(DISTINCT d.org_id) FILTER (WHERE d.role_id IS NOT NULL),
               array_agg(d.org_id) FILTER (WHERE d.user_id IS NOT NULL),
               array_agg(d.user_id) FILTER (WHERE d.user_id IS NOT NULL)
          INTO role_orgs, o, u FROM (
            (SELECT org_id, user_id, role_id, resource_type, resource_id FROM old_rows
             EXCEPT SELECT org_id, user_id, role_id, resource_type, resource_id FROM new_rows)
            UNION ALL
            (SELECT org_id, user_id, role_id, resource_type, resource_id FROM new_rows
             EXCEPT SELECT org_id, user_id, role_id, resource_type, resource_id FROM old_rows)
        ) d;
    END IF;
    IF role_orgs IS NOT NULL OR o IS NOT NULL THEN
        PERFORM orgperm.emit(TG_TABLE_NAME, false, role_orgs, o, u);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- Explicit eviction, for services and scripts not written in Go: each sends
-- the same payload a trigger would, on commit, to every listening instance.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION orgperm.evict_member(org_id text, user_id text) RETURNS void
LANGUAGE sql AS $$
    SELECT orgperm.emit('evict', false, NULL, ARRAY[org_id], ARRAY[user_id]);
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION orgperm.evict_org(org_id text) RETURNS void
LANGUAGE sql AS $$
    SELECT orgperm.emit('evict', false, ARRAY[org_id]);
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION orgperm.evict_user(user_id text) RETURNS void
LANGUAGE sql AS $$
    SELECT orgperm.emit('evict', false, NULL, NULL, NULL, ARRAY[user_id]);
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION orgperm.evict_all() RETURNS void
LANGUAGE sql AS $$
    SELECT orgperm.emit('evict', true);
$$;
-- +goose StatementEnd

-- One trigger per event (transition tables allow no more), plus TRUNCATE.
CREATE TRIGGER permissions_notify_update AFTER UPDATE ON orgperm.permissions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_permissions();
CREATE TRIGGER permissions_notify_delete AFTER DELETE ON orgperm.permissions
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_permissions();
CREATE TRIGGER permissions_notify_truncate AFTER TRUNCATE ON orgperm.permissions
    FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_truncate();

CREATE TRIGGER roles_notify_update AFTER UPDATE ON orgperm.roles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_roles();
CREATE TRIGGER roles_notify_delete AFTER DELETE ON orgperm.roles
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_roles();
CREATE TRIGGER roles_notify_truncate AFTER TRUNCATE ON orgperm.roles
    FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_truncate();

CREATE TRIGGER role_permissions_notify_insert AFTER INSERT ON orgperm.role_permissions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_role_permissions();
CREATE TRIGGER role_permissions_notify_update AFTER UPDATE ON orgperm.role_permissions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_role_permissions();
CREATE TRIGGER role_permissions_notify_delete AFTER DELETE ON orgperm.role_permissions
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_role_permissions();
CREATE TRIGGER role_permissions_notify_truncate AFTER TRUNCATE ON orgperm.role_permissions
    FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_truncate();

CREATE TRIGGER memberships_notify_insert AFTER INSERT ON orgperm.memberships
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_memberships();
CREATE TRIGGER memberships_notify_update AFTER UPDATE ON orgperm.memberships
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_memberships();
CREATE TRIGGER memberships_notify_delete AFTER DELETE ON orgperm.memberships
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_memberships();
CREATE TRIGGER memberships_notify_truncate AFTER TRUNCATE ON orgperm.memberships
    FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_truncate();

CREATE TRIGGER membership_roles_notify_insert AFTER INSERT ON orgperm.membership_roles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_membership_roles();
CREATE TRIGGER membership_roles_notify_update AFTER UPDATE ON orgperm.membership_roles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_membership_roles();
CREATE TRIGGER membership_roles_notify_delete AFTER DELETE ON orgperm.membership_roles
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_membership_roles();
CREATE TRIGGER membership_roles_notify_truncate AFTER TRUNCATE ON orgperm.membership_roles
    FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_truncate();

CREATE TRIGGER data_access_notify_insert AFTER INSERT ON orgperm.data_access
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_data_access();
CREATE TRIGGER data_access_notify_update AFTER UPDATE ON orgperm.data_access
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_data_access();
CREATE TRIGGER data_access_notify_delete AFTER DELETE ON orgperm.data_access
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_data_access();
CREATE TRIGGER data_access_notify_truncate AFTER TRUNCATE ON orgperm.data_access
    FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_truncate();
