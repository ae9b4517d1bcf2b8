-- orgperm check functions and row-level security: the checks of the Go API
-- (pkg/membership), asked in SQL, with the same answers.
--
--   orgperm.is_active_member(org, user_id [, at])
--   orgperm.has_permission(org, user_id, codename [, at])
--   orgperm.has_any_permission(org, user_id, codenames text[] [, at])
--   orgperm.has_all_permissions(org, user_id, codenames text[] [, at])
--   orgperm.can_access(org, user_id, resource_type, resource_id [, at])
--   orgperm.accessible_ids(org, user_id, resource_type [, at])
--       -> one row (all_of_type boolean, ids text[])
--   orgperm.user_has_active_membership(user_id [, at])
--   orgperm.principal_user(), orgperm.principal_org()
--   orgperm.policy_all_of_type(resource_type [, codename]),
--   orgperm.policy_ids(resource_type [, codename [, id_form]])   (what the policies ask)
--   orgperm.protect_table(tbl, org_column, id_column, resource_type [, codename])
--   orgperm.unprotect_table(tbl)
--
-- Semantics (those of Store.Load and PermissionSet; the differential test in
-- pkg/membership/sqlcheck_test.go is the proof):
--   * at is the instant of evaluation; omitted, it is statement_timestamp(),
--     the database's time. PostgreSQL's own ordering of timestamps is the
--     reference ('infinity' as valid_until is an open end).
--   * A membership grants only when status = 'active' and
--     (valid_from IS NULL OR valid_from <= at) AND
--     (valid_until IS NULL OR valid_until > at).
--   * A role counts when it is assigned to the member with
--     (valid_until IS NULL OR valid_until > at), and is a system role
--     (org_id IS NULL) or a role of the same organization.
--   * Data access: a grant in the organization, on the resource type, of that
--     record or of all records of the type (resource_id NULL), to the user
--     or to a role that counts.
--   * Only rows of the orgperm tables themselves count (FROM ONLY): rows of
--     tables that INHERIT them are not part of the model.
--
-- Failing closed: every check returns false (accessible_ids: no access) for
-- NULL, unknown or malformed input (an ID that cannot exist, a NULL at, an
-- empty codename list, a list holding NULL for has_all_permissions); it never
-- raises an error for its input.
--
-- Privileges: the check functions are SECURITY DEFINER with a pinned
-- search_path, so a role needs no privilege on orgperm's tables to ask them;
-- EXECUTE is revoked from PUBLIC and granted to the role orgperm_reader
-- (NOLOGIN), which this migration creates when it does not exist and the
-- migrator may create roles. Grant it to the app's roles:
--   GRANT orgperm_reader TO app_user;
-- When the migrator may not create roles, a notice says so and the
-- operator grants EXECUTE and USAGE by hand (README, "SQL interface").

-- +goose Up

-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'orgperm_reader') THEN
        BEGIN
            CREATE ROLE orgperm_reader NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created at the same moment by a migration of another database
        WHEN insufficient_privilege THEN
            RAISE NOTICE 'orgperm: cannot create role orgperm_reader (%); grant USAGE ON SCHEMA orgperm and EXECUTE on the orgperm check functions to your app''s roles by hand', SQLERRM;
        END;
    END IF;
END
$$;
-- +goose StatementEnd

-- is_active_member: Active() of the permission set of (org, user_id) at at.
-- +goose StatementBegin
CREATE FUNCTION orgperm.is_active_member(org text, user_id text, at timestamptz DEFAULT pg_catalog.statement_timestamp())
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
AS $$
#variable_conflict use_variable
BEGIN
    IF org IS NULL OR user_id IS NULL OR at IS NULL THEN
        RETURN false;
    END IF;
    RETURN EXISTS (
        SELECT FROM ONLY orgperm.memberships m
        WHERE m.org_id = org AND m.user_id = user_id AND m.status = 'active'
          AND (m.valid_from IS NULL OR m.valid_from <= at)
          AND (m.valid_until IS NULL OR m.valid_until > at));
END
$$;
-- +goose StatementEnd

-- has_any_permission: HasAny. True when an active member holds, at at, a
-- role that counts and grants one of codenames. NULL elements grant nothing.
-- +goose StatementBegin
CREATE FUNCTION orgperm.has_any_permission(org text, user_id text, codenames text[], at timestamptz DEFAULT pg_catalog.statement_timestamp())
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
AS $$
#variable_conflict use_variable
BEGIN
    IF org IS NULL OR user_id IS NULL OR codenames IS NULL OR at IS NULL THEN
        RETURN false;
    END IF;
    RETURN EXISTS (
        SELECT FROM ONLY orgperm.memberships m
        JOIN ONLY orgperm.membership_roles mr ON mr.org_id = m.org_id AND mr.user_id = m.user_id
        JOIN ONLY orgperm.roles r ON r.id = mr.role_id
        JOIN ONLY orgperm.role_permissions rp ON rp.role_id = mr.role_id
        WHERE m.org_id = org AND m.user_id = user_id AND m.status = 'active'
          AND (m.valid_from IS NULL OR m.valid_from <= at)
          AND (m.valid_until IS NULL OR m.valid_until > at)
          AND (mr.valid_until IS NULL OR mr.valid_until > at)
          AND (r.org_id IS NULL OR r.org_id = m.org_id)
          AND rp.codename = ANY (codenames));
END
$$;
-- +goose StatementEnd

-- has_permission: Has(codename).
-- +goose StatementBegin
CREATE FUNCTION orgperm.has_permission(org text, user_id text, codename text, at timestamptz DEFAULT pg_catalog.statement_timestamp())
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
AS $$
#variable_conflict use_variable
BEGIN
    IF org IS NULL OR user_id IS NULL OR codename IS NULL OR at IS NULL THEN
        RETURN false;
    END IF;
    RETURN EXISTS (
        SELECT FROM ONLY orgperm.memberships m
        JOIN ONLY orgperm.membership_roles mr ON mr.org_id = m.org_id AND mr.user_id = m.user_id
        JOIN ONLY orgperm.roles r ON r.id = mr.role_id
        JOIN ONLY orgperm.role_permissions rp ON rp.role_id = mr.role_id
        WHERE m.org_id = org AND m.user_id = user_id AND m.status = 'active'
          AND (m.valid_from IS NULL OR m.valid_from <= at)
          AND (m.valid_until IS NULL OR m.valid_until > at)
          AND (mr.valid_until IS NULL OR mr.valid_until > at)
          AND (r.org_id IS NULL OR r.org_id = m.org_id)
          AND rp.codename = codename);
END
$$;
-- +goose StatementEnd

-- has_all_permissions: HasAll. An empty list, or one holding NULL, is
-- false (as in Go: an empty requirement is more likely a bug than intent).
-- +goose StatementBegin
CREATE FUNCTION orgperm.has_all_permissions(org text, user_id text, codenames text[], at timestamptz DEFAULT pg_catalog.statement_timestamp())
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
AS $$
#variable_conflict use_variable
BEGIN
    IF org IS NULL OR user_id IS NULL OR codenames IS NULL OR at IS NULL
       OR cardinality(codenames) = 0 OR array_position(codenames, NULL) IS NOT NULL THEN
        RETURN false;
    END IF;
    RETURN (
        SELECT count(DISTINCT rp.codename)
        FROM ONLY orgperm.memberships m
        JOIN ONLY orgperm.membership_roles mr ON mr.org_id = m.org_id AND mr.user_id = m.user_id
        JOIN ONLY orgperm.roles r ON r.id = mr.role_id
        JOIN ONLY orgperm.role_permissions rp ON rp.role_id = mr.role_id
        WHERE m.org_id = org AND m.user_id = user_id AND m.status = 'active'
          AND (m.valid_from IS NULL OR m.valid_from <= at)
          AND (m.valid_until IS NULL OR m.valid_until > at)
          AND (mr.valid_until IS NULL OR mr.valid_until > at)
          AND (r.org_id IS NULL OR r.org_id = m.org_id)
          AND rp.codename = ANY (codenames)
    ) = (SELECT count(DISTINCT c) FROM unnest(codenames) c);
END
$$;
-- +goose StatementEnd

-- can_access: CanAccess(resource_type, resource_id).
-- +goose StatementBegin
CREATE FUNCTION orgperm.can_access(org text, user_id text, resource_type text, resource_id text, at timestamptz DEFAULT pg_catalog.statement_timestamp())
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
AS $$
#variable_conflict use_variable
BEGIN
    IF org IS NULL OR user_id IS NULL OR resource_type IS NULL OR resource_id IS NULL OR at IS NULL THEN
        RETURN false;
    END IF;
    RETURN EXISTS (
        SELECT FROM ONLY orgperm.memberships m
        WHERE m.org_id = org AND m.user_id = user_id AND m.status = 'active'
          AND (m.valid_from IS NULL OR m.valid_from <= at)
          AND (m.valid_until IS NULL OR m.valid_until > at)
    ) AND (EXISTS (
        SELECT FROM ONLY orgperm.data_access d
        WHERE d.org_id = org AND d.user_id = user_id
          AND d.resource_type = resource_type
          AND (d.resource_id IS NULL OR d.resource_id = resource_id)
    ) OR EXISTS (
        SELECT FROM ONLY orgperm.membership_roles mr
        JOIN ONLY orgperm.roles r ON r.id = mr.role_id
        JOIN ONLY orgperm.data_access d ON d.role_id = mr.role_id
        WHERE mr.org_id = org AND mr.user_id = user_id
          AND (mr.valid_until IS NULL OR mr.valid_until > at)
          AND (r.org_id IS NULL OR r.org_id = org)
          AND d.org_id = org AND d.resource_type = resource_type
          AND (d.resource_id IS NULL OR d.resource_id = resource_id)));
END
$$;
-- +goose StatementEnd

-- accessible_ids: AccessibleIDs(resource_type), as one row. all_of_type
-- reports access to every record of the type (ids is then empty); otherwise
-- ids lists the accessible record IDs in byte order (COLLATE "C", the order
-- of Go's sort), without duplicates. No access at all is (false, '{}').
-- +goose StatementBegin
CREATE FUNCTION orgperm.accessible_ids(org text, user_id text, resource_type text, at timestamptz DEFAULT pg_catalog.statement_timestamp(),
    OUT all_of_type boolean, OUT ids text[])
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
AS $$
#variable_conflict use_variable
BEGIN
    all_of_type := false;
    ids := '{}';
    IF org IS NULL OR user_id IS NULL OR resource_type IS NULL OR at IS NULL THEN
        RETURN;
    END IF;
    SELECT coalesce(bool_or(g.resource_id IS NULL), false),
           coalesce(array_agg(DISTINCT g.resource_id::text COLLATE "C" ORDER BY g.resource_id::text COLLATE "C")
                    FILTER (WHERE g.resource_id IS NOT NULL), '{}')
    INTO all_of_type, ids
    FROM (
        SELECT d.resource_id
        FROM ONLY orgperm.data_access d
        WHERE d.org_id = org AND d.user_id = user_id AND d.resource_type = resource_type
        UNION ALL
        SELECT d.resource_id
        FROM ONLY orgperm.membership_roles mr
        JOIN ONLY orgperm.roles r ON r.id = mr.role_id
        JOIN ONLY orgperm.data_access d ON d.role_id = mr.role_id
        WHERE mr.org_id = org AND mr.user_id = user_id
          AND (mr.valid_until IS NULL OR mr.valid_until > at)
          AND (r.org_id IS NULL OR r.org_id = org)
          AND d.org_id = org AND d.resource_type = resource_type
    ) g
    WHERE EXISTS (
        SELECT FROM ONLY orgperm.memberships m
        WHERE m.org_id = org AND m.user_id = user_id AND m.status = 'active'
          AND (m.valid_from IS NULL OR m.valid_from <= at)
          AND (m.valid_until IS NULL OR m.valid_until > at));
    IF all_of_type THEN
        ids := '{}';
    END IF;
END
$$;
-- +goose StatementEnd

-- user_has_active_membership: the first seed's question, LoadUserActive's
-- Active: an active membership inside its window in any organization.
-- +goose StatementBegin
CREATE FUNCTION orgperm.user_has_active_membership(user_id text, at timestamptz DEFAULT pg_catalog.statement_timestamp())
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
AS $$
#variable_conflict use_variable
BEGIN
    IF user_id IS NULL OR at IS NULL THEN
        RETURN false;
    END IF;
    RETURN EXISTS (
        SELECT FROM ONLY orgperm.memberships m
        WHERE m.user_id = user_id AND m.status = 'active'
          AND (m.valid_from IS NULL OR m.valid_from <= at)
          AND (m.valid_until IS NULL OR m.valid_until > at));
END
$$;
-- +goose StatementEnd

-- The principal: transaction-local settings, set by the app per transaction
--   SELECT set_config('orgperm.user_id', $1, true), set_config('orgperm.org_id', $2, true);
-- (membership.SetPrincipal in Go). Unset or empty is NULL: no principal.
-- These two are plain SQL, every name schema-qualified (operators too),
-- without a SET clause so that the planner inlines them; they read no table
-- and run with the caller's rights.
CREATE FUNCTION orgperm.principal_user() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT CASE WHEN pg_catalog.current_setting('orgperm.user_id', true) OPERATOR(pg_catalog.<>) ''
            THEN pg_catalog.current_setting('orgperm.user_id', true) END
$$;

CREATE FUNCTION orgperm.principal_org() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT CASE WHEN pg_catalog.current_setting('orgperm.org_id', true) OPERATOR(pg_catalog.<>) ''
            THEN pg_catalog.current_setting('orgperm.org_id', true) END
$$;

-- text_to returns SQL that converts the text expression e to the type typ
-- without ever raising: the value when e is the canonical text form of a
-- value of typ, else NULL. For text and varchar, e itself; for smallint,
-- integer, bigint and uuid, a guarded cast; NULL (no SQL) for any other type.
-- Used by protect_table only, for the principal's organization.
-- +goose StatementBegin
CREATE FUNCTION orgperm.text_to(typ oid, e text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE typ
    WHEN 'text'::regtype THEN e
    WHEN 'varchar'::regtype THEN e
    WHEN 'int2'::regtype THEN format($f$CASE WHEN %1$s ~ '^(0|-?[1-9][0-9]{0,4})$' THEN CASE WHEN %1$s::numeric BETWEEN -32768 AND 32767 THEN %1$s::int2 END END$f$, e)
    WHEN 'int4'::regtype THEN format($f$CASE WHEN %1$s ~ '^(0|-?[1-9][0-9]{0,9})$' THEN CASE WHEN %1$s::numeric BETWEEN -2147483648 AND 2147483647 THEN %1$s::int4 END END$f$, e)
    WHEN 'int8'::regtype THEN format($f$CASE WHEN %1$s ~ '^(0|-?[1-9][0-9]{0,18})$' THEN CASE WHEN %1$s::numeric BETWEEN -9223372036854775808 AND 9223372036854775807 THEN %1$s::int8 END END$f$, e)
    WHEN 'uuid'::regtype THEN format($f$CASE WHEN %1$s ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN %1$s::uuid END$f$, e)
END
$$;
-- +goose StatementEnd

-- The policy functions: what the policies protect_table writes ask, once
-- per statement, about the principal (principal_org(), principal_user())
-- at the statement's time. codename NULL means no permission is required.
--
-- policy_all_of_type: the principal is an active member, holds codename,
-- and has access to every record of resource_type. One query, so a policy
-- that admits a whole type costs one call per statement.
-- +goose StatementBegin
CREATE FUNCTION orgperm.policy_all_of_type(resource_type text, codename text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
AS $$
#variable_conflict use_variable
DECLARE
    org constant text := orgperm.principal_org();
    usr constant text := orgperm.principal_user();
    at  constant timestamptz := statement_timestamp();
BEGIN
    IF org IS NULL OR usr IS NULL OR resource_type IS NULL THEN
        RETURN false;
    END IF;
    -- Type-wide grants first: most principals have none, and the partial
    -- index data_access_type_wide_idx finds that in one probe. Separate
    -- statements, so that a principal without type-wide access pays for
    -- the executor set-up of these two probes only, not of the gate's.
    IF NOT EXISTS (
        SELECT FROM ONLY orgperm.data_access d
        WHERE d.org_id = org AND d.resource_type = resource_type AND d.resource_id IS NULL
          AND d.user_id = usr
    ) AND NOT EXISTS (
        SELECT FROM ONLY orgperm.data_access d
        JOIN ONLY orgperm.membership_roles mr ON mr.role_id = d.role_id
        JOIN ONLY orgperm.roles r ON r.id = mr.role_id
        WHERE d.org_id = org AND d.resource_type = resource_type AND d.resource_id IS NULL
          AND mr.org_id = org AND mr.user_id = usr
          AND (mr.valid_until IS NULL OR mr.valid_until > at)
          AND (r.org_id IS NULL OR r.org_id = org)
    ) THEN
        RETURN false;
    END IF;
    RETURN EXISTS (
        SELECT FROM ONLY orgperm.memberships m
        WHERE m.org_id = org AND m.user_id = usr AND m.status = 'active'
          AND (m.valid_from IS NULL OR m.valid_from <= at)
          AND (m.valid_until IS NULL OR m.valid_until > at)
    ) AND (codename IS NULL OR EXISTS (
        SELECT FROM ONLY orgperm.membership_roles mr
        JOIN ONLY orgperm.roles r ON r.id = mr.role_id
        JOIN ONLY orgperm.role_permissions rp ON rp.role_id = mr.role_id
        WHERE mr.org_id = org AND mr.user_id = usr
          AND (mr.valid_until IS NULL OR mr.valid_until > at)
          AND (r.org_id IS NULL OR r.org_id = org)
          AND rp.codename = codename
    ));
END
$$;
-- +goose StatementEnd

-- policy_ids: the records of resource_type the principal may access by a
-- grant of that record, when it is an active member that holds codename;
-- none (an empty array) otherwise. Duplicates are possible (a record
-- granted twice). An array, not a set of rows: the policy unnests it in the
-- target list of its hashed SubPlan, with no tuplestore in between.
-- id_form narrows the list to the IDs a typed ID column can hold, so that
-- the policy compares in the column's type, casting each granted ID once
-- per statement, instead of converting every row's ID to text: 'bigint',
-- only the canonical text forms of bigint values (::bigint never fails, and
-- a grant of '042' matches no row, as in the Go API); 'uuid', only the
-- canonical (lower-case, hyphenated) forms of uuid values; NULL, every ID.
-- The typed forms check the whole list with one regular expression, and
-- each ID on its own only when the list holds one that fails.
-- +goose StatementBegin
CREATE FUNCTION orgperm.policy_ids(resource_type text, codename text DEFAULT NULL, id_form text DEFAULT NULL)
RETURNS text[]
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
AS $$
#variable_conflict use_variable
DECLARE
    org constant text := orgperm.principal_org();
    usr constant text := orgperm.principal_user();
    at  constant timestamptz := statement_timestamp();
    one_id text;
    ids    text[];
    list   text;
BEGIN
    IF org IS NULL OR usr IS NULL OR resource_type IS NULL THEN
        RETURN '{}';
    END IF;
    IF id_form = 'bigint' THEN
        -- Up to 18 digits always fit; 19 digits only within the range,
        -- so those take the per-ID path.
        one_id := '(0|-?[1-9][0-9]{0,17})';
    ELSIF id_form = 'uuid' THEN
        one_id := '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
    ELSIF id_form IS NOT NULL THEN
        RETURN '{}';
    END IF;
    SELECT array_agg(g.resource_id::text), string_agg(g.resource_id::text, E'\n') FILTER (WHERE id_form IS NOT NULL)
        INTO ids, list FROM (
        SELECT d.resource_id
        FROM ONLY orgperm.data_access d
        WHERE d.org_id = org AND d.user_id = usr AND d.resource_type = resource_type
          AND d.resource_id IS NOT NULL
        UNION ALL
        SELECT d.resource_id
        FROM ONLY orgperm.membership_roles mr
        JOIN ONLY orgperm.roles r ON r.id = mr.role_id
        JOIN ONLY orgperm.data_access d ON d.role_id = mr.role_id
        WHERE mr.org_id = org AND mr.user_id = usr
          AND (mr.valid_until IS NULL OR mr.valid_until > at)
          AND (r.org_id IS NULL OR r.org_id = org)
          AND d.org_id = org AND d.resource_type = resource_type
          AND d.resource_id IS NOT NULL
    ) g
    WHERE EXISTS (
        SELECT FROM ONLY orgperm.memberships m
        WHERE m.org_id = org AND m.user_id = usr AND m.status = 'active'
          AND (m.valid_from IS NULL OR m.valid_from <= at)
          AND (m.valid_until IS NULL OR m.valid_until > at)
    ) AND (codename IS NULL OR EXISTS (
        SELECT FROM ONLY orgperm.membership_roles mr
        JOIN ONLY orgperm.roles r ON r.id = mr.role_id
        JOIN ONLY orgperm.role_permissions rp ON rp.role_id = mr.role_id
        WHERE mr.org_id = org AND mr.user_id = usr
          AND (mr.valid_until IS NULL OR mr.valid_until > at)
          AND (r.org_id IS NULL OR r.org_id = org)
          AND rp.codename = codename));
    IF ids IS NULL THEN
        RETURN '{}';
    END IF;
    IF id_form IS NULL THEN
        RETURN ids;
    END IF;
    -- The whole list as lines: every line a canonical ID, and as many
    -- lines as IDs (so that no ID holds a line break).
    IF list ~ ('^' || one_id || '(\n' || one_id || ')*$')
       AND octet_length(list) - octet_length(replace(list, E'\n', '')) = cardinality(ids) - 1 THEN
        RETURN ids;
    END IF;
    -- Nested CASEs fix the order: the numeric cast only of digits.
    RETURN ARRAY(
        SELECT x FROM unnest(ids) x
        WHERE CASE WHEN x ~ ('^' || one_id || '$') THEN true
                   WHEN id_form <> 'bigint' OR x !~ '^-?[1-9][0-9]{18}$' THEN false
                   ELSE x::numeric BETWEEN -9223372036854775808 AND 9223372036854775807 END);
END
$$;
-- +goose StatementEnd

-- Type-wide grants are few; this index finds them without walking a
-- subject's single-record grants (policy_all_of_type, can_access).
CREATE INDEX data_access_type_wide_idx ON orgperm.data_access (org_id, resource_type) WHERE resource_id IS NULL;

-- protect_table enables row-level security on tbl and writes the policy
-- orgperm_access (FOR ALL, PERMISSIVE, TO PUBLIC): a row is visible, and may
-- be written, when its org_column is the principal's organization, its
-- id_column is not NULL, and the principal may access (resource_type, id)
-- there, holding codename when one is given. The permission data is
-- computed once per statement, never once per row: each policy function
-- sits in a scalar subquery (an InitPlan, run on first use), and the ID list
-- is a hashed SubPlan.
--
-- IDs are compared as in the Go API, in their text form (a grant of '042'
-- does not cover the bigint 42, nor an uppercase UUID the uuid), but
-- without converting any row's ID: a text or varchar column (or a domain
-- over one) as it is; a smallint, integer, bigint or uuid column in its own
-- type, against the granted IDs that are canonical text forms of that type,
-- cast once per statement (policy_ids' id_form); any other as column::text.
-- The organization column is compared with the principal's organization
-- converted once per statement to the column's type when that is smallint,
-- integer, bigint or uuid (only from its canonical text form), else as
-- column::text.
--
-- It returns the policy's expression. It runs with the caller's rights (the
-- caller must own tbl), and calling it again replaces the policy.
-- +goose StatementBegin
CREATE FUNCTION orgperm.protect_table(tbl regclass, org_column name, id_column name, resource_type text, codename text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    org_type    oid;
    id_type     oid;
    id_notnull  boolean;
    args        text;
    org_expr    text;
    ids_expr    text;
    expr        text;
BEGIN
    IF tbl IS NULL OR org_column IS NULL OR id_column IS NULL OR resource_type IS NULL THEN
        RAISE EXCEPTION 'orgperm: protect_table: tbl, org_column, id_column and resource_type must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF (SELECT c.relnamespace FROM pg_class c WHERE c.oid = tbl) = 'orgperm'::regnamespace THEN
        RAISE EXCEPTION 'orgperm: protect_table: % is one of orgperm''s own tables', tbl
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF resource_type !~ '^[a-z][a-z0-9_.]*$' OR octet_length(resource_type) > 100 THEN
        RAISE EXCEPTION 'orgperm: protect_table: invalid resource type %', quote_literal(resource_type)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF codename IS NOT NULL AND (codename !~ '^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$' OR octet_length(codename) > 100) THEN
        RAISE EXCEPTION 'orgperm: protect_table: invalid codename %', quote_literal(codename)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT a.atttypid INTO org_type FROM pg_attribute a
    WHERE a.attrelid = tbl AND a.attname = org_column AND a.attnum > 0 AND NOT a.attisdropped;
    SELECT a.atttypid, a.attnotnull INTO id_type, id_notnull FROM pg_attribute a
    WHERE a.attrelid = tbl AND a.attname = id_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF org_type IS NULL OR id_type IS NULL THEN
        RAISE EXCEPTION 'orgperm: protect_table: % has no column %', tbl,
            CASE WHEN org_type IS NULL THEN quote_ident(org_column) ELSE quote_ident(id_column) END
            USING ERRCODE = 'undefined_column';
    END IF;
    -- Domains compare as their base types.
    WHILE (SELECT t.typtype FROM pg_type t WHERE t.oid = org_type) = 'd' LOOP
        org_type := (SELECT t.typbasetype FROM pg_type t WHERE t.oid = org_type);
    END LOOP;
    WHILE (SELECT t.typtype FROM pg_type t WHERE t.oid = id_type) = 'd' LOOP
        id_type := (SELECT t.typbasetype FROM pg_type t WHERE t.oid = id_type);
    END LOOP;

    args := quote_literal(resource_type) || CASE WHEN codename IS NULL THEN '' ELSE ', ' || quote_literal(codename) END;
    org_expr := format('%I = (SELECT %s FROM (SELECT orgperm.principal_org() AS p) p)', org_column, orgperm.text_to(org_type, 'p.p'));
    IF org_expr IS NULL THEN
        org_expr := format('%I::text = (SELECT orgperm.principal_org())', org_column);
    END IF;
    -- The IDs: a text column as it is; an integer or uuid column in its
    -- own type, against the granted IDs that are canonical text forms of
    -- that type (cast once per granted ID and statement, never once per
    -- row); any other type in its text form. policy_ids sits in a scalar
    -- subquery of its own: unnest's row estimate would otherwise evaluate
    -- it (a stable function) once more while planning.
    ids_expr := CASE
        WHEN id_type IN ('text'::regtype, 'varchar'::regtype) THEN
            format('%I IN (SELECT unnest((SELECT orgperm.policy_ids(%s))))', id_column, args)
        WHEN id_type IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) THEN
            format('%I IN (SELECT unnest((SELECT orgperm.policy_ids(%s, %s, ''bigint'')))::bigint)', id_column,
                quote_literal(resource_type), coalesce(quote_literal(codename), 'NULL'))
        WHEN id_type = 'uuid'::regtype THEN
            format('%I IN (SELECT unnest((SELECT orgperm.policy_ids(%s, %s, ''uuid'')))::uuid)', id_column,
                quote_literal(resource_type), coalesce(quote_literal(codename), 'NULL'))
        ELSE format('%I::text IN (SELECT unnest((SELECT orgperm.policy_ids(%s))))', id_column, args) END;
    expr := org_expr
        || CASE WHEN id_notnull THEN '' ELSE format(' AND %I IS NOT NULL', id_column) END
        || format(' AND ((SELECT orgperm.policy_all_of_type(%s)) OR %s)', args, ids_expr);

    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('DROP POLICY IF EXISTS orgperm_access ON %s', tbl);
    EXECUTE format('CREATE POLICY orgperm_access ON %s AS PERMISSIVE FOR ALL TO PUBLIC USING (%s) WITH CHECK (%s)',
        tbl, expr, expr);
    RETURN expr;
END
$$;
-- +goose StatementEnd

-- unprotect_table drops the policy protect_table wrote and disables
-- row-level security on tbl. The caller must own tbl.
-- +goose StatementBegin
CREATE FUNCTION orgperm.unprotect_table(tbl regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('DROP POLICY IF EXISTS orgperm_access ON %s', tbl);
    EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', tbl);
END
$$;
-- +goose StatementEnd

REVOKE EXECUTE ON FUNCTION
    orgperm.is_active_member(text, text, timestamptz),
    orgperm.has_permission(text, text, text, timestamptz),
    orgperm.has_any_permission(text, text, text[], timestamptz),
    orgperm.has_all_permissions(text, text, text[], timestamptz),
    orgperm.can_access(text, text, text, text, timestamptz),
    orgperm.accessible_ids(text, text, text, timestamptz),
    orgperm.user_has_active_membership(text, timestamptz),
    orgperm.principal_user(),
    orgperm.principal_org(),
    orgperm.policy_all_of_type(text, text),
    orgperm.policy_ids(text, text, text),
    orgperm.text_to(oid, text),
    orgperm.protect_table(regclass, name, name, text, text),
    orgperm.unprotect_table(regclass)
FROM PUBLIC;

-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'orgperm_reader') THEN
        GRANT USAGE ON SCHEMA orgperm TO orgperm_reader;
        GRANT EXECUTE ON FUNCTION
            orgperm.is_active_member(text, text, timestamptz),
            orgperm.has_permission(text, text, text, timestamptz),
            orgperm.has_any_permission(text, text, text[], timestamptz),
            orgperm.has_all_permissions(text, text, text[], timestamptz),
            orgperm.can_access(text, text, text, text, timestamptz),
            orgperm.accessible_ids(text, text, text, timestamptz),
            orgperm.user_has_active_membership(text, timestamptz),
            orgperm.principal_user(),
            orgperm.principal_org(),
            orgperm.policy_all_of_type(text, text),
            orgperm.policy_ids(text, text, text)
        TO orgperm_reader;
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- Fails while a table is still protected (its policy depends on these
-- functions): run orgperm.unprotect_table on it first. The role
-- orgperm_reader is cluster-wide and stays.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'orgperm_reader') THEN
        REVOKE USAGE ON SCHEMA orgperm FROM orgperm_reader;
    END IF;
END
$$;
-- +goose StatementEnd
DROP FUNCTION orgperm.unprotect_table(regclass);
DROP FUNCTION orgperm.protect_table(regclass, name, name, text, text);
DROP INDEX orgperm.data_access_type_wide_idx;
DROP FUNCTION orgperm.policy_ids(text, text, text);
DROP FUNCTION orgperm.policy_all_of_type(text, text);
DROP FUNCTION orgperm.text_to(oid, text);
DROP FUNCTION orgperm.principal_org();
DROP FUNCTION orgperm.principal_user();
DROP FUNCTION orgperm.user_has_active_membership(text, timestamptz);
DROP FUNCTION orgperm.accessible_ids(text, text, text, timestamptz);
DROP FUNCTION orgperm.can_access(text, text, text, text, timestamptz);
DROP FUNCTION orgperm.has_all_permissions(text, text, text[], timestamptz);
DROP FUNCTION orgperm.has_permission(text, text, text, timestamptz);
DROP FUNCTION orgperm.has_any_permission(text, text, text[], timestamptz);
DROP FUNCTION orgperm.is_active_member(text, text, timestamptz);
