-- orgperm audit trail: the one readable source of truth for what is recorded.
-- migrations/00005_audit.sql installs exactly this file as its Up section
-- (TestAuditSQLMatchesMigration in pkg/membership fails if the two drift
-- apart).
--
-- Every change to the six model tables, by any path (the library, raw SQL,
-- another service, psql by hand), inserts rows into orgperm.audit_log in the
-- same transaction, so a rolled-back change leaves none. The triggers are
-- statement-level with transition tables, separate from the invalidation
-- triggers of sql/triggers.sql: they insert rows only and never NOTIFY, so
-- the one-notification-per-statement rule is untouched.
--
-- One row per changed row (INSERT, DELETE, and UPDATE of a row whose audited
-- values changed: an UPDATE that sets the same values records nothing), and
-- one row per table for TRUNCATE (which has no rows to show):
--
--   at          statement_timestamp(): every row of one statement shares it,
--               and the statements of a transaction are ordered by it
--               (now(), the transaction's start, would not order them).
--   txid        the writing transaction (txid_current()): groups its rows.
--   table_name, operation ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE').
--   org_id, user_id  the row's organization and user, where it has them
--               (role_permissions: the role's organization, NULL for a
--               system role or a role deleted in the same statement).
--   row_key     the row's key, as JSON: {"org_id":..,"user_id":..}, {"id":..}.
--   old_values, new_values  the row before and after, as JSON, every column
--               but created_at and updated_at; NULL on the side that does
--               not exist. An UPDATE that changes a key (an org renamed by
--               ON UPDATE CASCADE) records a DELETE-like row of the old key
--               and an INSERT-like row of the new one, both as UPDATE.
--   db_user     the database role that wrote: the session's SET ROLE, else
--               its login role. (The trigger function runs as its owner,
--               SECURITY DEFINER, where current_user is the owner, so it
--               reads the role the session acts as instead. A write made
--               from inside another SECURITY DEFINER function records the
--               session's role, not that function's owner.)
--   actor       the application's user, from the transaction-local setting
--               orgperm.actor (membership.WithActor sets it; raw SQL can:
--               SELECT set_config('orgperm.actor', 'admin:42', true)); NULL
--               when unset or empty.
--
-- The functions are SECURITY DEFINER with a pinned search_path: writers need
-- no privilege on orgperm.audit_log (and should get none: they could forge
-- or erase history), and a writer's search_path or row-level security cannot
-- change what is recorded. Retention: orgperm.prune_audit(older_than).

CREATE TABLE orgperm.audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL,
    txid       bigint NOT NULL,
    table_name text NOT NULL,
    -- TG_OP: INSERT, UPDATE, DELETE or TRUNCATE. No CHECK: only the
    -- trigger writes here, and PostgreSQL reads a CHECK's expression anew
    -- at every statement's start, a tenth of the trigger's work.
    operation  text NOT NULL,
    org_id     text,
    user_id    text,
    row_key    jsonb,
    old_values jsonb,
    new_values jsonb,
    db_user    text NOT NULL,
    actor      text
);
REVOKE ALL ON orgperm.audit_log FROM PUBLIC;

-- The history views read newest first by id: of an org, of one member, of
-- an actor. Pruning reads by time (BRIN: rows arrive in time order).
CREATE INDEX audit_log_org_idx ON orgperm.audit_log (org_id, id) WHERE org_id IS NOT NULL;
CREATE INDEX audit_log_member_idx ON orgperm.audit_log (org_id, user_id, id) WHERE user_id IS NOT NULL;
CREATE INDEX audit_log_actor_idx ON orgperm.audit_log (actor, id) WHERE actor IS NOT NULL;
CREATE INDEX audit_log_at_idx ON orgperm.audit_log USING brin (at);

-- orgperm.audit_changes records one statement's rows. TG_ARGV[0] lists the
-- table's audited columns that are not part of its key, comma-separated:
-- the key is the row without them (and without created_at, updated_at).
-- +goose StatementBegin
CREATE FUNCTION orgperm.audit_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    noise  constant text[] := '{created_at,updated_at}';
    nonkey constant text[] := string_to_array(TG_ARGV[0], ',') || noise;
    actor  constant text := nullif(current_setting('orgperm.actor', true), '');
    writer constant text := CASE current_setting('role') WHEN 'none' THEN session_user::text ELSE current_setting('role') END;
    ts     constant timestamptz := statement_timestamp();
    tx     constant bigint := txid_current();
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO orgperm.audit_log (at, txid, table_name, operation, db_user, actor)
        VALUES (ts, tx, TG_TABLE_NAME, TG_OP, writer, actor);
        RETURN NULL;
    END IF;

    -- One row per changed row: its JSON without noise; the key is that
    -- JSON without the non-key columns; org_id is the role's for
    -- role_permissions. Each row's JSON is made once, in a subquery kept
    -- apart by OFFSET 0: pulled up, its to_jsonb would be copied into every
    -- expression that reads it (the join key, the filter, each column),
    -- and computed that many times per row.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO orgperm.audit_log (at, txid, table_name, operation, org_id, user_id, row_key, old_values, new_values, db_user, actor)
        SELECT ts, tx, TG_TABLE_NAME, TG_OP,
               CASE WHEN TG_TABLE_NAME = 'role_permissions' THEN (SELECT ro.org_id::text FROM ONLY orgperm.roles ro WHERE ro.id = (c.n ->> 'role_id')::bigint) ELSE c.n ->> 'org_id' END,
               c.n ->> 'user_id', c.n - nonkey, NULL, c.n, writer, actor
        FROM (SELECT to_jsonb(r) - noise AS n FROM new_rows r OFFSET 0) c;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO orgperm.audit_log (at, txid, table_name, operation, org_id, user_id, row_key, old_values, new_values, db_user, actor)
        SELECT ts, tx, TG_TABLE_NAME, TG_OP,
               CASE WHEN TG_TABLE_NAME = 'role_permissions' THEN (SELECT ro.org_id::text FROM ONLY orgperm.roles ro WHERE ro.id = (c.o ->> 'role_id')::bigint) ELSE c.o ->> 'org_id' END,
               c.o ->> 'user_id', c.o - nonkey, c.o, NULL, writer, actor
        FROM (SELECT to_jsonb(r) - noise AS o FROM old_rows r OFFSET 0) c;
    ELSE
        -- Old and new rows paired by key; a row whose audited values did
        -- not change is not recorded.
        INSERT INTO orgperm.audit_log (at, txid, table_name, operation, org_id, user_id, row_key, old_values, new_values, db_user, actor)
        SELECT ts, tx, TG_TABLE_NAME, TG_OP,
               CASE WHEN TG_TABLE_NAME = 'role_permissions' THEN (SELECT ro.org_id::text FROM ONLY orgperm.roles ro WHERE ro.id = (c.r ->> 'role_id')::bigint) ELSE c.r ->> 'org_id' END,
               c.r ->> 'user_id', c.r - nonkey, c.o, c.n, writer, actor
        FROM (
            SELECT o.j AS o, n.j AS n, coalesce(n.j, o.j) AS r
            FROM (SELECT to_jsonb(r) - noise AS j FROM old_rows r OFFSET 0) o
            FULL JOIN (SELECT to_jsonb(r) - noise AS j FROM new_rows r OFFSET 0) n ON (o.j - nonkey) = (n.j - nonkey)
            WHERE o.j IS DISTINCT FROM n.j
        ) c;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- orgperm.prune_audit deletes the audit rows older than older_than (by
-- their at, against the database's time) and returns how many it deleted.
-- It runs with its caller's rights: the caller needs DELETE on
-- orgperm.audit_log. Run it on a schedule (membership.Store.PruneAudit).
-- +goose StatementBegin
CREATE FUNCTION orgperm.prune_audit(older_than interval) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION 'orgperm: prune_audit: older_than must be a positive interval, not %', older_than
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM orgperm.audit_log WHERE at < statement_timestamp() - older_than;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
-- +goose StatementEnd

-- One trigger per event (transition tables allow no more), plus TRUNCATE.
-- The argument lists each table's audited columns outside its key.
CREATE TRIGGER permissions_audit_insert AFTER INSERT ON orgperm.permissions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('description');
CREATE TRIGGER permissions_audit_update AFTER UPDATE ON orgperm.permissions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('description');
CREATE TRIGGER permissions_audit_delete AFTER DELETE ON orgperm.permissions
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('description');
CREATE TRIGGER permissions_audit_truncate AFTER TRUNCATE ON orgperm.permissions
    FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('');

CREATE TRIGGER roles_audit_insert AFTER INSERT ON orgperm.roles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('org_id,name,description');
CREATE TRIGGER roles_audit_update AFTER UPDATE ON orgperm.roles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('org_id,name,description');
CREATE TRIGGER roles_audit_delete AFTER DELETE ON orgperm.roles
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('org_id,name,description');
CREATE TRIGGER roles_audit_truncate AFTER TRUNCATE ON orgperm.roles
    FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('');

CREATE TRIGGER role_permissions_audit_insert AFTER INSERT ON orgperm.role_permissions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('');
CREATE TRIGGER role_permissions_audit_update AFTER UPDATE ON orgperm.role_permissions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('');
CREATE TRIGGER role_permissions_audit_delete AFTER DELETE ON orgperm.role_permissions
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('');
CREATE TRIGGER role_permissions_audit_truncate AFTER TRUNCATE ON orgperm.role_permissions
    FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('');

CREATE TRIGGER memberships_audit_insert AFTER INSERT ON orgperm.memberships
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('status,valid_from,valid_until');
CREATE TRIGGER memberships_audit_update AFTER UPDATE ON orgperm.memberships
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('status,valid_from,valid_until');
CREATE TRIGGER memberships_audit_delete AFTER DELETE ON orgperm.memberships
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('status,valid_from,valid_until');
CREATE TRIGGER memberships_audit_truncate AFTER TRUNCATE ON orgperm.memberships
    FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('');

CREATE TRIGGER membership_roles_audit_insert AFTER INSERT ON orgperm.membership_roles
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('valid_until');
CREATE TRIGGER membership_roles_audit_update AFTER UPDATE ON orgperm.membership_roles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('valid_until');
CREATE TRIGGER membership_roles_audit_delete AFTER DELETE ON orgperm.membership_roles
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('valid_until');
CREATE TRIGGER membership_roles_audit_truncate AFTER TRUNCATE ON orgperm.membership_roles
    FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('');

CREATE TRIGGER data_access_audit_insert AFTER INSERT ON orgperm.data_access
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('org_id,user_id,role_id,resource_type,resource_id');
CREATE TRIGGER data_access_audit_update AFTER UPDATE ON orgperm.data_access
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('org_id,user_id,role_id,resource_type,resource_id');
CREATE TRIGGER data_access_audit_delete AFTER DELETE ON orgperm.data_access
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('org_id,user_id,role_id,resource_type,resource_id');
CREATE TRIGGER data_access_audit_truncate AFTER TRUNCATE ON orgperm.data_access
    FOR EACH STATEMENT EXECUTE FUNCTION orgperm.audit_changes('');
