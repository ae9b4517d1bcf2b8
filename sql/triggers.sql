-- orgperm invalidation triggers: the one readable source of truth for what
-- emits NOTIFY. The newest triggers migration (migrations/NNNNN_*.sql)
-- installs exactly this file; TestTriggersMatchMigration fails if the two
-- drift apart. After editing it, run `make generate`: it rewrites the
-- unreleased triggers migration, or writes the next numbered one when the
-- newest is released (see scripts/gen-triggers-migration.sh). The file starts
-- from nothing (it drops what any earlier version installed), so it upgrades
-- a database at any earlier version as well as it installs a fresh one.
--
-- Protocol (version 1). Channel: orgperm_invalidate. Payload: one JSON object,
-- always under 8000 bytes:
--
--   {"v":1,"t":"<source>","all":true}                   everything
--   {"v":1,"t":"<source>","orgs":["o1","o2"]}           every key of these orgs
--   {"v":1,"t":"<source>","members":[["o1","u1"]]}      these (org, user) keys
--   {"v":1,"t":"<source>","users":["u1"]}               every key of these users
--
-- <source> is the table whose statement caused it, "evict" for the
-- orgperm.evict_* functions, or "ddl" for a DDL command on orgperm's tables,
-- triggers or functions (always {"v":1,"t":"ddl","all":true}). A payload only
-- ever removes; it never carries permission data.
--
-- Ordinary sessions fire statement-level triggers with transition tables:
-- one statement sends one notification per scope, never one per row. A
-- statement that touches more than orgperm.notify_max_users users of one org
-- (default 50) collapses to that org; one that touches more than
-- orgperm.notify_max_orgs orgs (default 100) collapses to everything. Both
-- are ordinary settings (SET orgperm.notify_max_users = 200); a value that is
-- not an integer from 0 to 1000000 counts as unset. Lists too long for one
-- payload are split over several, each under 8000 bytes; lists that would
-- need more than four payloads collapse too (pairs to their orgs, orgs to
-- everything), so a statement sends a handful of notifications at most.
-- PostgreSQL sends nothing for a transaction that rolls back, and folds
-- identical payloads of one transaction into one.
--
-- Every write path fires (issue #10, "no silent bypass"):
--   * session_replication_role = replica (the logical replication apply
--     worker, and sessions that set it by hand) fires only ENABLE REPLICA
--     triggers, and the apply worker fires only row-level ones for INSERT,
--     UPDATE and DELETE: each table has a row-level *_notify_replica trigger,
--     enabled REPLICA, that sends its row's payload. The statement-level
--     triggers keep the default (ORIGIN) enablement, so no write is notified
--     twice. TRUNCATE triggers are ENABLE ALWAYS (the apply worker fires
--     statement-level TRUNCATE triggers).
--   * Every function on the invalidation path (trigger functions and what
--     they call: orgperm.expected_functions()) is SECURITY DEFINER (it runs
--     as the schema owner: the writer's row-level security and privileges
--     do not filter its lookups) with search_path pinned to pg_catalog,
--     pg_temp, so no schema of the writer's can shadow a function or
--     operator it uses; the functions it calls are schema-qualified too.
--   * Rows of a table that INHERITS an orgperm table are not part of the
--     model: every lookup reads FROM ONLY, and writes to a child table send
--     nothing (docs/DECISIONS.md).
--   * DDL is an invalidation: the event triggers orgperm_ddl_notify
--     (ddl_command_end) and orgperm_ddl_notify_drop (sql_drop), ENABLE
--     ALWAYS, send {"v":1,"t":"ddl","all":true} for any command that touches
--     an object of schema orgperm (disabling, dropping or replacing a
--     trigger, altering or dropping a table, replacing a function). Creating
--     them needs a superuser; without one the migration says so in a NOTICE
--     and orgperm.fingerprint() is the only signal (as it is for DROP SCHEMA
--     orgperm CASCADE and pg_restore --clean, which drop the event triggers
--     first).
--   * orgperm.fingerprint() changes whenever an orgperm table, a trigger on
--     one, or a function of schema orgperm comes, goes or is replaced, and
--     whenever such a trigger is enabled, disabled or altered;
--     orgperm.inspect() lists what is wrong; orgperm.schema_version() is the
--     version of this file; orgperm.reset_trigger_modes() repairs the modes
--     that ENABLE TRIGGER ALL (pg_restore --disable-triggers) resets.
--   * PREPARE TRANSACTION after a write to an orgperm table fails (SQLSTATE
--     0A000): PostgreSQL cannot prepare a transaction that sent NOTIFY.

-- Start from nothing: drop what any earlier version of this file installed
-- (event triggers first, so that dropping the rest is not itself notified;
-- dropping a trigger function drops its triggers). A down migration runs this
-- part, then the previous version's file.
-- An upgrade keeps the transport (orgperm.set_transport): remembered here,
-- for this transaction, and set again at the end of this file.
-- +goose StatementBegin
DO $$
BEGIN
    IF pg_catalog.to_regprocedure('orgperm.transport()') IS NOT NULL THEN
        PERFORM pg_catalog.set_config('orgperm.upgrade_transport', coalesce(orgperm.transport(), 'notify'), true);
    END IF;
END
$$;
-- +goose StatementEnd

-- teardown begin
DROP EVENT TRIGGER IF EXISTS orgperm_ddl_notify;
DROP EVENT TRIGGER IF EXISTS orgperm_ddl_notify_drop;
DROP FUNCTION IF EXISTS orgperm.notify_ddl() CASCADE;
DROP FUNCTION IF EXISTS orgperm.notify_permissions() CASCADE;
DROP FUNCTION IF EXISTS orgperm.notify_roles() CASCADE;
DROP FUNCTION IF EXISTS orgperm.notify_role_permissions() CASCADE;
DROP FUNCTION IF EXISTS orgperm.notify_memberships() CASCADE;
DROP FUNCTION IF EXISTS orgperm.notify_membership_roles() CASCADE;
DROP FUNCTION IF EXISTS orgperm.notify_data_access() CASCADE;
DROP FUNCTION IF EXISTS orgperm.notify_truncate() CASCADE;
DROP FUNCTION IF EXISTS orgperm.notify_permissions_row() CASCADE;
DROP FUNCTION IF EXISTS orgperm.notify_roles_row() CASCADE;
DROP FUNCTION IF EXISTS orgperm.notify_role_permissions_row() CASCADE;
DROP FUNCTION IF EXISTS orgperm.notify_memberships_row() CASCADE;
DROP FUNCTION IF EXISTS orgperm.notify_membership_roles_row() CASCADE;
DROP FUNCTION IF EXISTS orgperm.notify_data_access_row() CASCADE;
DROP FUNCTION IF EXISTS orgperm.evict_member(text, text);
DROP FUNCTION IF EXISTS orgperm.evict_org(text);
DROP FUNCTION IF EXISTS orgperm.evict_user(text);
DROP FUNCTION IF EXISTS orgperm.evict_all();
DROP FUNCTION IF EXISTS orgperm.emit_roles(text, bigint[]);
DROP FUNCTION IF EXISTS orgperm.emit(text, boolean, text[], text[], text[], text[]);
DROP FUNCTION IF EXISTS orgperm.emit(text, boolean, text[], text[], text[], text[], boolean);
DROP FUNCTION IF EXISTS orgperm.emit_chunks(text, text[]);
DROP FUNCTION IF EXISTS orgperm.emit_chunks(text, text[], boolean);
DROP FUNCTION IF EXISTS orgperm.relay();
DROP FUNCTION IF EXISTS orgperm.prove(text, text);
DROP FUNCTION IF EXISTS orgperm.set_transport(text);
DROP FUNCTION IF EXISTS orgperm.wal_slot();
DROP FUNCTION IF EXISTS orgperm.relay_emit(text, boolean, text[], text[], text[], bigint[]);
DROP FUNCTION IF EXISTS orgperm.transport();
DROP FUNCTION IF EXISTS orgperm.transport_source(text);
DROP FUNCTION IF EXISTS orgperm.send(text, text);
DROP TABLE IF EXISTS orgperm.queue;
DROP FUNCTION IF EXISTS orgperm.list_bytes(text[]);
DROP FUNCTION IF EXISTS orgperm.setting_int(text, integer);
DROP FUNCTION IF EXISTS orgperm.fingerprint();
DROP FUNCTION IF EXISTS orgperm.schema_version();
DROP FUNCTION IF EXISTS orgperm.inspect();
DROP FUNCTION IF EXISTS orgperm.reset_trigger_modes();
DROP FUNCTION IF EXISTS orgperm.installed_digests();
DROP FUNCTION IF EXISTS orgperm.current_digests();
DROP FUNCTION IF EXISTS orgperm.expected_functions();
DROP FUNCTION IF EXISTS orgperm.expected_triggers();
-- teardown end

-- orgperm.schema_version is the version of this file: the schema version of
-- the migration that installed it. The Go client refuses a database whose
-- version it does not know.
-- +goose StatementBegin
CREATE FUNCTION orgperm.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT 7;
$$;
-- +goose StatementEnd

-- The transport (issue #15, docs/DECISIONS.md 53). Every payload leaves
-- through orgperm.send(channel, payload), whose body is one of two, swapped
-- by the owner-only orgperm.set_transport:
--
--   * 'notify' (the default): pg_notify in the writer's own transaction. A
--     SQL function of one SELECT, without SECURITY DEFINER or SET clause, so
--     PostgreSQL inlines it into the calling expression: the fast paths cost
--     what a pg_notify written in place costs. Every notifying commit takes
--     PostgreSQL's database-wide notify lock through its WAL flush, which
--     caps writers with triggers (README "Scaling").
--   * 'queue': an INSERT of the payload into orgperm.queue, in the writer's
--     transaction, without the notify lock. One app instance at a time (the
--     relay leader) calls orgperm.relay(), which deletes every committed row
--     its snapshot sees and NOTIFYs them, merged, in its own transaction:
--     every relayed write committed before its notification, and a row
--     committed after the relay's snapshot goes in the next round. Proofs of
--     delivery (orgperm.prove) travel the same way, after the payloads
--     relayed with them, so a relay that stopped stops the proofs and every
--     instance bypasses its cache.
--   * 'wal' (docs/DECISIONS.md 64): no invalidation trigger fires; the
--     relay leader decodes the WAL through a logical replication slot
--     (orgperm.wal_slot(), plugin pgoutput, publication orgperm_wal) and
--     NOTIFYs the scopes of every committed change, whatever wrote it
--     (replica sessions, logical replication, restores included). What
--     still goes through orgperm.send (proofs, orgperm.evict_*) becomes a
--     transactional logical message, decoded in commit order with the rows.
--     Needs wal_level = logical and PostgreSQL 14 or later; the relay's role
--     needs REPLICATION to create and read the slot.
--
-- The mode is the function's body: a writer's session cannot change it (no
-- setting is read), and a missing or altered send makes writes fail, never
-- go silent; orgperm.inspect() reports a body set_transport did not install.

-- orgperm.queue holds payloads until the relay sends them. UNLOGGED: no WAL
-- per write; crash recovery and a promoted standby start it empty, and
-- every listener reconnects after either and purges (docs/DECISIONS.md 53).
-- Only the schema owner (through the functions below) writes it.
-- queued_at is when the writing statement began (`orgperm doctor` reports
-- the oldest row's age: rows that wait while a relay leads mean a relay
-- stuck or too slow).
CREATE UNLOGGED TABLE orgperm.queue (
    id        bigint GENERATED ALWAYS AS IDENTITY,
    channel   text NOT NULL,
    payload   text NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT pg_catalog.statement_timestamp()
) WITH (autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0);
REVOKE ALL ON orgperm.queue FROM PUBLIC;

-- orgperm.transport_source: the language and body of orgperm.send for a
-- mode, NULL for an unknown one.
-- +goose StatementBegin
CREATE FUNCTION orgperm.transport_source(mode text, OUT language text, OUT body text)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE mode WHEN 'notify' THEN 'sql' WHEN 'queue' THEN 'plpgsql' WHEN 'wal' THEN 'sql' END,
           CASE mode
               WHEN 'notify' THEN E'\n    SELECT pg_catalog.pg_notify(channel, payload);\n'
               WHEN 'queue' THEN E'\nBEGIN\n    INSERT INTO orgperm.queue (channel, payload) VALUES ($1, $2);\nEND\n'
               WHEN 'wal' THEN E'\n    SELECT pg_catalog.pg_logical_emit_message(true, channel, payload);\n'
           END;
$$;
-- +goose StatementEnd

-- orgperm.send: see above. Created here with the 'notify' body;
-- orgperm.set_transport replaces it. Keep the body equal to
-- transport_source('notify').
-- +goose StatementBegin
CREATE FUNCTION orgperm.send(channel text, payload text) RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT pg_catalog.pg_notify(channel, payload);
$$;
-- +goose StatementEnd

-- orgperm.transport: 'notify', 'queue' or 'wal', what orgperm.send does; NULL when
-- its body is neither (orgperm.inspect() reports it).
-- +goose StatementBegin
CREATE FUNCTION orgperm.transport() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT m.mode
    FROM (VALUES ('notify'), ('queue'), ('wal')) m(mode),
         orgperm.transport_source(m.mode) src,
         pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
    WHERE p.oid = pg_catalog.to_regprocedure('orgperm.send(text, text)')
      AND NOT p.prosecdef AND p.proconfig IS NULL AND p.provolatile = 'v'
      AND l.lanname = src.language AND p.prosrc = src.body
      AND (SELECT count(*) FROM pg_catalog.pg_proc o
           WHERE o.proname = 'send' AND o.pronamespace = p.pronamespace) = 1;
$$;
-- +goose StatementEnd

-- orgperm.set_transport('queue' | 'notify' | 'wal') switches every writer of the
-- database at once, and returns the mode it set. Only the schema owner (or a
-- superuser) may: it replaces orgperm.send. Before switching to 'queue', run
-- a relay (membership.Config.Relay on the app instances); otherwise every
-- instance's cache bypasses itself (its proofs never come back), loudly.
-- The switch sends a "ddl" payload on both paths, so every instance purges,
-- verifies the schema and proves delivery again on the new path; the relay
-- keeps draining the queue after a switch back to 'notify', and proofs go
-- through the queue as long as it holds rows. 'wal' also creates the
-- publication orgperm_wal (the six tables, every action), sets REPLICA
-- IDENTITY FULL on roles and data_access (a deleted row's org and subject
-- are not in its key) and disables the notify triggers; leaving 'wal'
-- enables them again (orgperm.reset_trigger_modes) and leaves the
-- publication and the replica identities as they are. The relay drops the
-- slot once the transport is no longer 'wal'. A switch into or out of
-- 'wal' alters the six tables: it first locks them all against writes
-- (SHARE ROW EXCLUSIVE, what ALTER TABLE ... DISABLE TRIGGER takes; readers
-- go on), parents first (the order of their foreign keys' cascades), so that
-- writers under way finish and none holding one table waits for another
-- behind it. The first switch to 'wal' also sets two replica identities,
-- which waits for the readers of those two tables.
-- +goose StatementBegin
CREATE FUNCTION orgperm.set_transport(mode text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src record;
    was_wal constant boolean := orgperm.transport() IS NOT DISTINCT FROM 'wal';
    tbl pg_catalog.regclass;
BEGIN
    SELECT * INTO src FROM orgperm.transport_source(mode);
    IF src.body IS NULL THEN
        RAISE EXCEPTION 'orgperm.set_transport: unknown transport %; want ''notify'', ''queue'' or ''wal''', mode
            USING ERRCODE = '22023';
    END IF;
    IF (mode = 'wal') <> was_wal THEN
        LOCK TABLE orgperm.permissions, orgperm.roles, orgperm.role_permissions, orgperm.memberships,
            orgperm.membership_roles, orgperm.data_access IN SHARE ROW EXCLUSIVE MODE;
    END IF;
    IF mode = 'wal' THEN
        IF pg_catalog.current_setting('server_version_num')::integer < 140000 THEN
            RAISE EXCEPTION 'orgperm.set_transport: the wal transport needs PostgreSQL 14 or later'
                USING ERRCODE = '55000';
        END IF;
        IF pg_catalog.current_setting('wal_level') <> 'logical' THEN
            RAISE EXCEPTION 'orgperm.set_transport: the wal transport needs wal_level = logical (it is %)',
                pg_catalog.current_setting('wal_level')
                USING ERRCODE = '55000', HINT = 'ALTER SYSTEM SET wal_level = logical, then restart the server.';
        END IF;
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = 'orgperm_wal') THEN
            CREATE PUBLICATION orgperm_wal FOR TABLE orgperm.permissions, orgperm.roles, orgperm.role_permissions,
                orgperm.memberships, orgperm.membership_roles, orgperm.data_access
                WITH (publish = 'insert, update, delete, truncate');
        END IF;
        -- roles and data_access: a deleted row's org and subject are not
        -- in its key. memberships and membership_roles: not needed to be
        -- correct, but with the whole old row the relay leaves alone an
        -- UPDATE that changed only a timestamp.
        FOR tbl IN
            SELECT c.oid FROM pg_catalog.pg_class c
            WHERE c.oid = ANY (ARRAY['orgperm.roles', 'orgperm.data_access', 'orgperm.memberships',
                                     'orgperm.membership_roles']::pg_catalog.regclass[])
              AND c.relreplident <> 'f'
        LOOP
            EXECUTE pg_catalog.format('ALTER TABLE %s REPLICA IDENTITY FULL', tbl);
        END LOOP;
    END IF;
    IF orgperm.transport() IS DISTINCT FROM mode THEN
        EXECUTE pg_catalog.format(
            'CREATE OR REPLACE FUNCTION orgperm.send(channel text, payload text) RETURNS void LANGUAGE %s VOLATILE AS %L',
            src.language, src.body);
    END IF;
    IF (mode = 'wal') <> was_wal THEN
        PERFORM orgperm.reset_trigger_modes();
    END IF;
    PERFORM pg_catalog.pg_notify('orgperm_invalidate', '{"v":1,"t":"ddl","all":true}');
    INSERT INTO orgperm.queue (channel, payload) VALUES ('orgperm_invalidate', '{"v":1,"t":"ddl","all":true}');
    RETURN mode;
END
$$;
-- +goose StatementEnd

-- orgperm.wal_slot is the logical replication slot the wal transport's
-- relay reads: one per database (slot names are the cluster's), created by
-- the relay.
-- +goose StatementBegin
CREATE FUNCTION orgperm.wal_slot() RETURNS name
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT ('orgperm_wal_' || d.oid::text)::name FROM pg_catalog.pg_database d
    WHERE d.datname = pg_catalog.current_database();
$$;
-- +goose StatementEnd

-- orgperm.prove sends a proof of delivery (pkg/listener/proof.go) on
-- proof_channel: "p1 <wal insert lsn> <clock, µs> <fingerprint> <tag>", all
-- read here, before the proof leaves. It takes the path writes take (send),
-- and the queue whenever the queue holds a committed row, whatever the mode:
-- a proof then comes back only after everything committed before its clock
-- was read has been relayed. In wal mode the proof is a logical message,
-- never a queue row, and its transaction commits with synchronous_commit on:
-- the slot decodes only flushed WAL, and flushing the proof's commit record
-- flushes every commit before it.
-- +goose StatementBegin
CREATE FUNCTION orgperm.prove(proof_channel text, tag text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p constant text := 'p1 ' || pg_catalog.pg_current_wal_insert_lsn()::text || ' '
        || (extract(epoch FROM pg_catalog.clock_timestamp()) * 1000000)::bigint::text || ' '
        || orgperm.fingerprint() || ' ' || tag;
BEGIN
    IF orgperm.transport() = 'wal' THEN
        PERFORM pg_catalog.set_config('synchronous_commit', 'on', true);
        PERFORM orgperm.send(proof_channel, p);
    ELSIF EXISTS (SELECT FROM orgperm.queue) THEN
        INSERT INTO orgperm.queue (channel, payload) VALUES (proof_channel, p);
    ELSE
        PERFORM orgperm.send(proof_channel, p);
    END IF;
END
$$;
-- +goose StatementEnd

-- orgperm.relay sends what the queue holds: it deletes every row its
-- snapshot sees (row locks keep two relays disjoint) and NOTIFYs them in
-- this transaction, on commit: the invalidation payloads first, merged per
-- source ("t") into as few as orgperm.emit sends for one statement of that
-- source touching all their scopes (collapsed and split the same way), user
-- scopes last; then the other rows (proofs) one by one, in queue order. Returns the number of
-- rows taken. Anyone may call it: what it takes it sends, in the same
-- transaction.
-- +goose StatementBegin
CREATE FUNCTION orgperm.relay() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n          integer;
    inv        text[];
    chans      text[];
    others     text[];
    js         jsonb[];
    src        text;
    everything boolean;
    o          text[];
    mo         text[];
    mu         text[];
    u          text[];
BEGIN
    WITH taken AS (DELETE FROM orgperm.queue q RETURNING q.id, q.channel, q.payload)
    SELECT count(*)::integer,
           array_agg(t.payload ORDER BY t.id) FILTER (WHERE t.channel = 'orgperm_invalidate'),
           array_agg(t.channel ORDER BY t.id) FILTER (WHERE t.channel <> 'orgperm_invalidate'),
           array_agg(t.payload ORDER BY t.id) FILTER (WHERE t.channel <> 'orgperm_invalidate')
      INTO n, inv, chans, others FROM taken t;
    IF inv IS NOT NULL AND inv[1] = ALL (inv) THEN
        -- One payload (or one repeated): as it is.
        PERFORM pg_catalog.pg_notify('orgperm_invalidate', inv[1]);
    ELSIF inv IS NOT NULL THEN
        SELECT array_agg(x.p::jsonb ORDER BY x.ord) INTO js FROM pg_catalog.unnest(inv) WITH ORDINALITY AS x(p, ord);
        -- Two passes over the sources: everything but user scopes, then
        -- user scopes (only orgperm.evict_user sends those), so that an
        -- evict_user payload relayed in a round comes after every other
        -- payload of the round, as a barrier (rows of one round carry no
        -- commit order among themselves).
        FOR pass IN 1 .. 2 LOOP
            FOR src IN
                SELECT s.t FROM (SELECT coalesce(j.j ->> 't', '') AS t, min(j.ord) AS first
                                 FROM pg_catalog.unnest(js) WITH ORDINALITY AS j(j, ord) GROUP BY 1) s
                ORDER BY s.first
            LOOP
                SELECT coalesce(bool_or(j.j -> 'all' = 'true'::jsonb), false) INTO everything
                  FROM pg_catalog.unnest(js) AS j(j) WHERE coalesce(j.j ->> 't', '') = src;
                o := NULL; mo := NULL; mu := NULL; u := NULL;
                IF pass = 1 AND NOT everything THEN
                    SELECT array_agg(e) INTO o FROM pg_catalog.unnest(js) AS j(j), pg_catalog.jsonb_array_elements_text(j.j -> 'orgs') e
                     WHERE coalesce(j.j ->> 't', '') = src;
                    SELECT array_agg(e ->> 0), array_agg(e ->> 1) INTO mo, mu
                      FROM pg_catalog.unnest(js) AS j(j), pg_catalog.jsonb_array_elements(j.j -> 'members') e
                     WHERE coalesce(j.j ->> 't', '') = src;
                ELSIF pass = 2 AND NOT everything THEN
                    SELECT array_agg(e) INTO u FROM pg_catalog.unnest(js) AS j(j), pg_catalog.jsonb_array_elements_text(j.j -> 'users') e
                     WHERE coalesce(j.j ->> 't', '') = src;
                END IF;
                IF pass = 1 AND (everything OR o IS NOT NULL OR mo IS NOT NULL) OR u IS NOT NULL THEN
                    PERFORM orgperm.emit(src, pass = 1 AND everything, o, mo, mu, u, true);
                END IF;
            END LOOP;
        END LOOP;
    END IF;
    FOR i IN 1 .. coalesce(pg_catalog.cardinality(chans), 0) LOOP
        PERFORM pg_catalog.pg_notify(chans[i], others[i]);
    END LOOP;
    RETURN n;
END
$$;
-- +goose StatementEnd

-- orgperm.setting_int reads an integer setting: its value when that is an
-- integer from 0 to 1000000, otherwise (unset, empty, not an integer,
-- negative, absurd) fallback. A bad value never breaks a write.
-- +goose StatementBegin
CREATE FUNCTION orgperm.setting_int(name text, fallback integer) RETURNS integer
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v text := pg_catalog.btrim(pg_catalog.current_setting(name, true));
BEGIN
    IF v ~ '^[0-9]{1,7}$' AND v::integer <= 1000000 THEN
        RETURN v::integer;
    END IF;
    RETURN fallback;
END
$$;
-- +goose StatementEnd

-- orgperm.emit sends the payloads for one statement: scope everything, or
-- the orgs in orgs plus the (member_orgs[i], member_users[i]) pairs plus the
-- users in users, collapsed and split as described above.
-- +goose StatementBegin
CREATE FUNCTION orgperm.emit(
    source text,
    everything boolean,
    orgs text[] DEFAULT NULL,
    member_orgs text[] DEFAULT NULL,
    member_users text[] DEFAULT NULL,
    users text[] DEFAULT NULL,
    direct boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- At most this many bytes of list per scope kind: a handful of payloads.
    budget    constant integer := 4 * 7800;
    head      constant text := '{"v":1,"t":' || pg_catalog.to_json(source)::text;
    max_users integer;
    max_orgs  integer;
    org_list  text[];
    pair_list text[];
    user_list text[];
    payload   text;
BEGIN
    IF NOT everything AND orgs IS NULL AND users IS NULL AND pg_catalog.cardinality(member_orgs) >= 1
       AND member_orgs[1] = ALL (member_orgs) AND member_users[1] = ALL (member_users) THEN
        -- Fast path for the common single-row write: one pair (an UPDATE
        -- lists it twice, old and new). Simple expressions, no query.
        payload := head || ',"members":[[' || pg_catalog.to_json(member_orgs[1])::text || ','
                 || pg_catalog.to_json(member_users[1])::text || ']]}';
        IF direct THEN
            PERFORM pg_catalog.pg_notify('orgperm_invalidate', payload);
        ELSE
            PERFORM orgperm.send('orgperm_invalidate', payload);
        END IF;
        RETURN;
    END IF;
    IF NOT everything THEN
        max_users := orgperm.setting_int('orgperm.notify_max_users', 50);
        max_orgs := orgperm.setting_int('orgperm.notify_max_orgs', 100);
        -- Distinct pairs; an org with too many of them becomes an org scope.
        -- (Multi-argument unnest is syntax, not a function: it cannot be
        -- qualified; the pinned search_path covers it.)
        WITH pairs AS (
            SELECT DISTINCT p.o, p.u FROM unnest(member_orgs, member_users) AS p(o, u)
            WHERE p.o IS NOT NULL AND p.u IS NOT NULL
        ), big AS (
            SELECT p.o FROM pairs p GROUP BY p.o HAVING count(*) > max_users
        ), scope_orgs AS (
            SELECT x.o FROM pg_catalog.unnest(orgs) AS x(o) WHERE x.o IS NOT NULL
            UNION
            SELECT b.o FROM big b
        )
        SELECT
            (SELECT array_agg(pg_catalog.to_json(s.o)::text ORDER BY s.o) FROM scope_orgs s),
            (SELECT array_agg('[' || pg_catalog.to_json(p.o)::text || ',' || pg_catalog.to_json(p.u)::text || ']' ORDER BY p.o, p.u)
               FROM pairs p WHERE NOT EXISTS (SELECT FROM scope_orgs s WHERE s.o = p.o))
        INTO org_list, pair_list;

        IF users IS NOT NULL THEN
            SELECT array_agg(pg_catalog.to_json(x.u)::text ORDER BY x.u) INTO user_list
            FROM (SELECT DISTINCT y.u FROM pg_catalog.unnest(users) AS y(u) WHERE y.u IS NOT NULL) x;
        END IF;

        IF (SELECT count(DISTINCT o) FROM (
                SELECT pg_catalog.unnest(orgs) AS o
                UNION ALL SELECT pg_catalog.unnest(member_orgs)
            ) t WHERE o IS NOT NULL) > max_orgs THEN
            everything := true;
        ELSIF orgperm.list_bytes(pair_list) > budget THEN
            -- Too many pairs for a handful of payloads: their orgs instead.
            SELECT array_agg(DISTINCT j ORDER BY j) INTO org_list FROM (
                SELECT pg_catalog.unnest(org_list) AS j
                UNION SELECT pg_catalog.to_json(p.o)::text FROM pg_catalog.unnest(member_orgs) AS p(o) WHERE p.o IS NOT NULL
            ) x;
            pair_list := NULL;
        END IF;
        IF orgperm.list_bytes(org_list) > budget OR orgperm.list_bytes(user_list) > budget THEN
            everything := true;
        END IF;
    END IF;

    IF everything AND direct THEN
        PERFORM pg_catalog.pg_notify('orgperm_invalidate', head || ',"all":true}');
        RETURN;
    ELSIF everything THEN
        PERFORM orgperm.send('orgperm_invalidate', head || ',"all":true}');
        RETURN;
    END IF;

    PERFORM orgperm.emit_chunks(head || ',"orgs":[', org_list, direct);
    PERFORM orgperm.emit_chunks(head || ',"members":[', pair_list, direct);
    PERFORM orgperm.emit_chunks(head || ',"users":[', user_list, direct);
END
$$;
-- +goose StatementEnd

-- orgperm.list_bytes is the size of elements joined with commas.
-- +goose StatementBegin
CREATE FUNCTION orgperm.list_bytes(elements text[]) RETURNS bigint
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(sum(pg_catalog.octet_length(e) + 1), 0) FROM pg_catalog.unnest(elements) AS e;
$$;
-- +goose StatementEnd

-- orgperm.emit_chunks sends prefix || elements || ']}' as few times as it
-- takes to keep every payload under 8000 bytes. An element is at most ~520
-- bytes (two 128-byte IDs, JSON-escaped), so every payload holds at least one.
-- +goose StatementBegin
CREATE FUNCTION orgperm.emit_chunks(prefix text, elements text[], direct boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    max_bytes constant integer := 7900;
    buf  text := '';
    elem text;
BEGIN
    IF elements IS NULL THEN
        RETURN;
    END IF;
    FOREACH elem IN ARRAY elements LOOP
        IF buf <> '' AND pg_catalog.octet_length(prefix) + pg_catalog.octet_length(buf) + pg_catalog.octet_length(elem) + 3 > max_bytes THEN
            IF direct THEN
                PERFORM pg_catalog.pg_notify('orgperm_invalidate', prefix || buf || ']}');
            ELSE
                PERFORM orgperm.send('orgperm_invalidate', prefix || buf || ']}');
            END IF;
            buf := '';
        END IF;
        buf := CASE WHEN buf = '' THEN elem ELSE buf || ',' || elem END;
    END LOOP;
    IF buf <> '' AND direct THEN
        PERFORM pg_catalog.pg_notify('orgperm_invalidate', prefix || buf || ']}');
    ELSIF buf <> '' THEN
        PERFORM orgperm.send('orgperm_invalidate', prefix || buf || ']}');
    END IF;
END
$$;
-- +goose StatementEnd

-- orgperm.relay_emit sends, in the caller's transaction, what the wal
-- transport's relay (pkg/relay) decoded for one source table: everything,
-- or the orgs, the (member_orgs[i], member_users[i]) pairs and the orgs of
-- role_ids (everything for a system role; a role that no longer exists is
-- skipped: its deletion was decoded too, with its org), collapsed and split
-- as emit does. Anyone may call it: it only evicts, as any session's
-- pg_notify on the channel could.
-- +goose StatementBegin
CREATE FUNCTION orgperm.relay_emit(source text, everything boolean, orgs text[], member_orgs text[],
                                   member_users text[], role_ids bigint[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    system_role boolean;
    role_orgs   text[];
BEGIN
    IF NOT everything AND role_ids IS NOT NULL THEN
        SELECT coalesce(bool_or(r.org_id IS NULL), false), array_agg(DISTINCT r.org_id) FILTER (WHERE r.org_id IS NOT NULL)
          INTO system_role, role_orgs
          FROM ONLY orgperm.roles r WHERE r.id = ANY (role_ids);
        everything := system_role;
        orgs := orgs || role_orgs;
    END IF;
    IF everything OR orgs IS NOT NULL OR member_orgs IS NOT NULL THEN
        PERFORM orgperm.emit(source, everything, orgs, member_orgs, member_users, NULL, true);
    END IF;
END
$$;
-- +goose StatementEnd

-- The scope of a role: its org, or everything for a system role (offered in
-- every org). Roles that no longer exist are skipped: their deletion sent
-- its own notification.
-- +goose StatementBegin
CREATE FUNCTION orgperm.emit_roles(source text, role_ids bigint[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    system_role boolean;
    org_ids text[];
BEGIN
    SELECT coalesce(bool_or(r.org_id IS NULL), false), array_agg(DISTINCT r.org_id) FILTER (WHERE r.org_id IS NOT NULL)
      INTO system_role, org_ids
      FROM ONLY orgperm.roles r WHERE r.id = ANY (role_ids);
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
CREATE FUNCTION orgperm.notify_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM orgperm.emit(TG_TABLE_NAME, true);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- permissions: a new codename is in no role yet, so INSERT changes nothing.
-- A renamed or deleted codename changes every set that holds it: everything.
-- +goose StatementBegin
CREATE FUNCTION orgperm.notify_permissions() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
CREATE FUNCTION orgperm.notify_roles() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
CREATE FUNCTION orgperm.notify_role_permissions() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
--
-- Cost (issue #12, DECISIONS 57): a one-row statement, the common write,
-- reads its row with one-row queries of one scan each (an UPDATE: the old
-- row, then the new row, compared with it, and whether a second row
-- follows; an INSERT or DELETE: the row and whether a second follows) and
-- sends a payload built by string concatenation, as a simple expression:
-- no further query, no executor for the send, no nested function call. Each query starts an executor, and each plan node costs
-- its start-up again: a join or subqueries of LIMIT 1 scans cost more than
-- two plain scans. A bulk statement computes its changed pairs with one set
-- operation (a join of the two sides on the key) and counts them in the
-- same query; when they all lie in one org and are too many to list, the
-- org scope is sent at once; otherwise the pairs go through orgperm.emit.
-- +goose StatementBegin
CREATE FUNCTION orgperm.notify_memberships() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n     bigint;  -- (org, user) pairs changed
    o1    text;    -- the first row's
    u1    text;
    s1    text;
    f1    timestamptz;
    t1    timestamptz;
    kind  integer; -- UPDATE: 2 one row, key kept, changed; 1 the same unchanged; 0 anything else
    one   boolean; -- INSERT, DELETE: one row
    done  boolean; -- the send's result (void), which a simple expression needs somewhere to go
    o     text[];
    u     text[];
    mergejoin text;
    one_org boolean;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        SELECT a.org_id, a.user_id, a.status, a.valid_from, a.valid_until
          INTO o1, u1, s1, f1, t1 FROM old_rows a;
        -- No old row: no new row either, and kind stays NULL.
        SELECT CASE WHEN b.org_id <> o1 OR b.user_id <> u1 OR EXISTS (SELECT FROM new_rows OFFSET 1) THEN 0
                    WHEN (b.status, b.valid_from, b.valid_until) IS NOT DISTINCT FROM (s1, f1, t1) THEN 1
                    ELSE 2 END
          INTO kind FROM new_rows b;
        IF kind = 2 THEN
            done := orgperm.send('orgperm_invalidate', '{"v":1,"t":"' || TG_TABLE_NAME || '","members":[["'
                || pg_catalog.replace(pg_catalog.replace(o1, E'\\', E'\\\\'), '"', E'\\"') || '","'
                || pg_catalog.replace(pg_catalog.replace(u1, E'\\', E'\\\\'), '"', E'\\"') || '"]]}') IS NULL;
            RETURN NULL;
        ELSIF kind IS NULL OR kind = 1 THEN
            RETURN NULL;
        END IF;
        -- A bulk UPDATE of one org that provably changed more than
        -- notify_max_users pairs needs no join: the org scope below follows
        -- from a scan of each side. Equal sides of the join cannot differ in
        -- how many rows are active, or have a window start or end, and each
        -- changed pair moves each of these counts by at most 1: the largest
        -- difference is at most the number of changed pairs the join
        -- counts, so n may stand for them. Bulk status changes and windows
        -- set or cleared prove it this way; anything short of the proof
        -- takes the join. (GREATEST is syntax, not a function: unqualified.)
        SELECT a.one_org AND b.one_org,
               GREATEST(pg_catalog.abs(a.active - b.active), pg_catalog.abs(a.starts - b.starts),
                        pg_catalog.abs(a.ends - b.ends))
          INTO one_org, n
          FROM (SELECT bool_and(x.org_id = o1) AS one_org, count(*) FILTER (WHERE x.status = 'active') AS active,
                       count(x.valid_from) AS starts, count(x.valid_until) AS ends FROM old_rows x) a,
               (SELECT bool_and(x.org_id = o1) AS one_org, count(*) FILTER (WHERE x.status = 'active') AS active,
                       count(x.valid_from) AS starts, count(x.valid_until) AS ends FROM new_rows x) b;
        mergejoin := pg_catalog.current_setting('enable_mergejoin');
        IF (one_org AND n > orgperm.setting_int('orgperm.notify_max_users', 50)) IS NOT TRUE THEN
            -- The changed pairs, by one join of the two sides on the key:
            -- each side holds a key at most once, so every changed pair is
            -- one row (a changed key: its old and its new pair, unmatched).
            -- A hash join: without statistics on the transition tables the
            -- planner prefers sorting both sides for a merge join, three
            -- times slower at 1,000 rows. The writer's own setting is put
            -- back right after (a SET LOCAL in a function outlives it unless
            -- the function's SET clause names the same setting, and one
            -- there would cost every call).
            PERFORM pg_catalog.set_config('enable_mergejoin', 'off', true);
            -- Whether they all lie in org o1 (the first old row's org): an
            -- equality per row, cheaper than a minimum and a maximum.
            SELECT count(*), coalesce(bool_and(coalesce(a.org_id, b.org_id) = o1), false)
              INTO n, one_org
              FROM old_rows a FULL JOIN new_rows b ON b.org_id = a.org_id AND b.user_id = a.user_id
             WHERE (a.status, a.valid_from, a.valid_until) IS DISTINCT FROM (b.status, b.valid_from, b.valid_until);
            PERFORM pg_catalog.set_config('enable_mergejoin', mergejoin, true);
        END IF;
    ELSE
        IF TG_OP = 'INSERT' THEN
            SELECT r.org_id, r.user_id, NOT EXISTS (SELECT FROM new_rows OFFSET 1)
              INTO o1, u1, one FROM new_rows r;
        ELSE
            SELECT r.org_id, r.user_id, NOT EXISTS (SELECT FROM old_rows OFFSET 1)
              INTO o1, u1, one FROM old_rows r;
        END IF;
        -- No row: one stays NULL.
        IF one THEN
            done := orgperm.send('orgperm_invalidate', '{"v":1,"t":"' || TG_TABLE_NAME || '","members":[["'
                || pg_catalog.replace(pg_catalog.replace(o1, E'\\', E'\\\\'), '"', E'\\"') || '","'
                || pg_catalog.replace(pg_catalog.replace(u1, E'\\', E'\\\\'), '"', E'\\"') || '"]]}') IS NULL;
            RETURN NULL;
        ELSIF one IS NULL THEN
            RETURN NULL;
        END IF;
        IF TG_OP = 'INSERT' THEN
            SELECT count(*), bool_and(r.org_id = o1) INTO n, one_org FROM new_rows r;
        ELSE
            SELECT count(*), bool_and(r.org_id = o1) INTO n, one_org FROM old_rows r;
        END IF;
    END IF;
    IF n = 0 THEN
        RETURN NULL;
    ELSIF one_org AND n > orgperm.setting_int('orgperm.notify_max_users', 50)
          AND orgperm.setting_int('orgperm.notify_max_orgs', 100) >= 1 THEN
        -- Too many users of one org to list: the org (what emit would send).
        PERFORM orgperm.send('orgperm_invalidate', '{"v":1,"t":"' || TG_TABLE_NAME || '","orgs":["'
            || pg_catalog.replace(pg_catalog.replace(o1, E'\\', E'\\\\'), '"', E'\\"') || '"]}');
        RETURN NULL;
    END IF;

    -- Several orgs, or few users: the list, collapsed and split by emit.
    IF TG_OP = 'UPDATE' THEN
        PERFORM pg_catalog.set_config('enable_mergejoin', 'off', true);
        SELECT array_agg(coalesce(a.org_id, b.org_id)), array_agg(coalesce(a.user_id, b.user_id))
          INTO o, u
          FROM old_rows a FULL JOIN new_rows b ON b.org_id = a.org_id AND b.user_id = a.user_id
         WHERE (a.status, a.valid_from, a.valid_until) IS DISTINCT FROM (b.status, b.valid_from, b.valid_until);
        PERFORM pg_catalog.set_config('enable_mergejoin', mergejoin, true);
    ELSIF TG_OP = 'INSERT' THEN
        SELECT array_agg(r.org_id), array_agg(r.user_id) INTO o, u FROM new_rows r;
    ELSE
        SELECT array_agg(r.org_id), array_agg(r.user_id) INTO o, u FROM old_rows r;
    END IF;
    PERFORM orgperm.emit(TG_TABLE_NAME, false, NULL, o, u);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- membership_roles: the (org, user) pairs whose roles changed. Rows removed
-- by a cascade from a deleted membership or role are skipped: that deletion
-- sent its own, wider notification. Statements that touch one pair (one
-- role assigned, changed or removed; a member's roles written at once) send
-- its payload directly, as notify_memberships does; others go through emit.
-- +goose StatementBegin
CREATE FUNCTION orgperm.notify_membership_roles() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    o1    text;
    u1    text;
    r1    bigint;
    t1    timestamptz;
    kind  integer; -- UPDATE: 2 one row, key kept, changed; 1 the same unchanged; 0 anything else
    one   boolean; -- INSERT: every row the first row's member
    done  boolean; -- the send's result (void), which a simple expression needs somewhere to go
    o     text[];
    u     text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- The first row, and whether every row is its member's: one
        -- query, as notify_memberships reads a row. No row: one stays NULL.
        SELECT r.org_id, r.user_id, NOT EXISTS (SELECT FROM new_rows x WHERE x.org_id <> r.org_id OR x.user_id <> r.user_id)
          INTO o1, u1, one FROM new_rows r;
        IF one THEN
            done := orgperm.send('orgperm_invalidate', '{"v":1,"t":"' || TG_TABLE_NAME || '","members":[["'
                || pg_catalog.replace(pg_catalog.replace(o1, E'\\', E'\\\\'), '"', E'\\"') || '","'
                || pg_catalog.replace(pg_catalog.replace(u1, E'\\', E'\\\\'), '"', E'\\"') || '"]]}') IS NULL;
            RETURN NULL;
        ELSIF one IS NULL THEN
            RETURN NULL;
        END IF;
        SELECT array_agg(r.org_id), array_agg(r.user_id) INTO o, u FROM new_rows r;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(d.org_id), array_agg(d.user_id) INTO o, u FROM old_rows d
         WHERE EXISTS (SELECT FROM ONLY orgperm.memberships m WHERE m.org_id = d.org_id AND m.user_id = d.user_id)
           AND EXISTS (SELECT FROM ONLY orgperm.roles r WHERE r.id = d.role_id);
    ELSE
        -- As in notify_memberships: the old row, then the new one compared
        -- with it and a probe for a second row.
        SELECT a.org_id, a.user_id, a.role_id, a.valid_until INTO o1, u1, r1, t1 FROM old_rows a;
        SELECT CASE WHEN b.org_id <> o1 OR b.user_id <> u1 OR b.role_id <> r1
                         OR EXISTS (SELECT FROM new_rows OFFSET 1) THEN 0
                    WHEN b.valid_until IS NOT DISTINCT FROM t1 THEN 1
                    ELSE 2 END
          INTO kind FROM new_rows b;
        IF kind = 2 THEN
            done := orgperm.send('orgperm_invalidate', '{"v":1,"t":"' || TG_TABLE_NAME || '","members":[["'
                || pg_catalog.replace(pg_catalog.replace(o1, E'\\', E'\\\\'), '"', E'\\"') || '","'
                || pg_catalog.replace(pg_catalog.replace(u1, E'\\', E'\\\\'), '"', E'\\"') || '"]]}') IS NULL;
            RETURN NULL;
        ELSIF kind IS NULL OR kind = 1 THEN
            RETURN NULL;
        END IF;
        SELECT array_agg(d.org_id), array_agg(d.user_id) INTO o, u FROM (
            (SELECT org_id, user_id, role_id, valid_until FROM old_rows
             EXCEPT SELECT org_id, user_id, role_id, valid_until FROM new_rows)
            UNION ALL
            (SELECT org_id, user_id, role_id, valid_until FROM new_rows
             EXCEPT SELECT org_id, user_id, role_id, valid_until FROM old_rows)
        ) d;
    END IF;
    IF o IS NULL THEN
        RETURN NULL;
    ELSIF o[1] = ALL (o) AND u[1] = ALL (u) THEN
        PERFORM orgperm.send('orgperm_invalidate', '{"v":1,"t":"' || TG_TABLE_NAME || '","members":[["'
            || pg_catalog.replace(pg_catalog.replace(o[1], E'\\', E'\\\\'), '"', E'\\"') || '","'
            || pg_catalog.replace(pg_catalog.replace(u[1], E'\\', E'\\\\'), '"', E'\\"') || '"]]}');
    ELSE
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
CREATE FUNCTION orgperm.notify_data_access() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    role_orgs text[];
    o text[];
    u text[];
    o1 text;
    u1 text;
    one boolean;
    done boolean; -- the send's result (void), which a simple expression needs somewhere to go
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        -- Grants written or removed for one user (one grant, the usual
        -- case): the first row, and whether every row is that user's, in
        -- one query; that member's payload directly, as emit would send it,
        -- without calling emit. A user's grant is never skipped as a
        -- cascade (only a role's is). No row: one stays NULL.
        IF TG_OP = 'INSERT' THEN
            SELECT d.org_id, d.user_id, NOT EXISTS (SELECT FROM new_rows x
                       WHERE x.user_id IS DISTINCT FROM d.user_id OR x.org_id <> d.org_id)
              INTO o1, u1, one FROM new_rows d;
        ELSE
            SELECT d.org_id, d.user_id, NOT EXISTS (SELECT FROM old_rows x
                       WHERE x.user_id IS DISTINCT FROM d.user_id OR x.org_id <> d.org_id)
              INTO o1, u1, one FROM old_rows d;
        END IF;
        IF one AND u1 IS NOT NULL THEN
            done := orgperm.send('orgperm_invalidate', '{"v":1,"t":"' || TG_TABLE_NAME || '","members":[["'
                || pg_catalog.replace(pg_catalog.replace(o1, E'\\', E'\\\\'), '"', E'\\"') || '","'
                || pg_catalog.replace(pg_catalog.replace(u1, E'\\', E'\\\\'), '"', E'\\"') || '"]]}') IS NULL;
            RETURN NULL;
        ELSIF one IS NULL THEN
            RETURN NULL;
        END IF;
    END IF;
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
         WHERE d.role_id IS NULL OR EXISTS (SELECT FROM ONLY orgperm.roles r WHERE r.id = d.role_id);
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
    IF role_orgs IS NULL AND o[1] = ALL (o) AND u[1] = ALL (u) THEN
        -- Grants to one user only (one grant written, the usual case): its
        -- payload directly, as emit would send it, without calling emit.
        PERFORM orgperm.send('orgperm_invalidate', '{"v":1,"t":"' || TG_TABLE_NAME || '","members":[["'
            || pg_catalog.replace(pg_catalog.replace(o[1], E'\\', E'\\\\'), '"', E'\\"') || '","'
            || pg_catalog.replace(pg_catalog.replace(u[1], E'\\', E'\\\\'), '"', E'\\"') || '"]]}');
    ELSIF role_orgs IS NOT NULL OR o IS NOT NULL THEN
        PERFORM orgperm.emit(TG_TABLE_NAME, false, role_orgs, o, u);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- Row-level twins of the functions above, for replica sessions (the logical
-- replication apply worker): the same scopes, decided from OLD and NEW, one
-- row at a time. PostgreSQL folds the identical payloads of one transaction.
-- Replica sessions skip the BEFORE guards of 00001 (they are ORIGIN
-- triggers), so these do not assume a role keeps its org.
-- +goose StatementBegin
CREATE FUNCTION orgperm.notify_permissions_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM orgperm.emit(TG_TABLE_NAME, true);
    ELSIF TG_OP = 'UPDATE' THEN
        IF OLD.codename IS DISTINCT FROM NEW.codename THEN
            PERFORM orgperm.emit(TG_TABLE_NAME, true);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION orgperm.notify_roles_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.org_id IS NULL THEN
            PERFORM orgperm.emit(TG_TABLE_NAME, true);
        ELSE
            PERFORM orgperm.emit(TG_TABLE_NAME, false, ARRAY[OLD.org_id]::text[]);
        END IF;
    ELSIF TG_OP = 'UPDATE' THEN
        IF (OLD.id, OLD.org_id, OLD.name) IS DISTINCT FROM (NEW.id, NEW.org_id, NEW.name) THEN
            IF OLD.org_id IS NULL OR NEW.org_id IS NULL THEN
                PERFORM orgperm.emit(TG_TABLE_NAME, true);
            ELSE
                PERFORM orgperm.emit(TG_TABLE_NAME, false, ARRAY[OLD.org_id, NEW.org_id]::text[]);
            END IF;
        END IF;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION orgperm.notify_role_permissions_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM orgperm.emit_roles(TG_TABLE_NAME, ARRAY[NEW.role_id]);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM orgperm.emit_roles(TG_TABLE_NAME, ARRAY[OLD.role_id]);
    ELSIF (OLD.role_id, OLD.codename) IS DISTINCT FROM (NEW.role_id, NEW.codename) THEN
        PERFORM orgperm.emit_roles(TG_TABLE_NAME, ARRAY[OLD.role_id, NEW.role_id]);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION orgperm.notify_memberships_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM orgperm.emit(TG_TABLE_NAME, false, NULL, ARRAY[NEW.org_id]::text[], ARRAY[NEW.user_id]::text[]);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM orgperm.emit(TG_TABLE_NAME, false, NULL, ARRAY[OLD.org_id]::text[], ARRAY[OLD.user_id]::text[]);
    ELSIF (OLD.org_id, OLD.user_id, OLD.status, OLD.valid_from, OLD.valid_until)
          IS DISTINCT FROM (NEW.org_id, NEW.user_id, NEW.status, NEW.valid_from, NEW.valid_until) THEN
        PERFORM orgperm.emit(TG_TABLE_NAME, false, NULL,
            ARRAY[OLD.org_id, NEW.org_id]::text[], ARRAY[OLD.user_id, NEW.user_id]::text[]);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION orgperm.notify_membership_roles_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM orgperm.emit(TG_TABLE_NAME, false, NULL, ARRAY[NEW.org_id]::text[], ARRAY[NEW.user_id]::text[]);
    ELSIF TG_OP = 'DELETE' THEN
        IF EXISTS (SELECT FROM ONLY orgperm.memberships m WHERE m.org_id = OLD.org_id AND m.user_id = OLD.user_id)
           AND EXISTS (SELECT FROM ONLY orgperm.roles r WHERE r.id = OLD.role_id) THEN
            PERFORM orgperm.emit(TG_TABLE_NAME, false, NULL, ARRAY[OLD.org_id]::text[], ARRAY[OLD.user_id]::text[]);
        END IF;
    ELSIF (OLD.org_id, OLD.user_id, OLD.role_id, OLD.valid_until)
          IS DISTINCT FROM (NEW.org_id, NEW.user_id, NEW.role_id, NEW.valid_until) THEN
        PERFORM orgperm.emit(TG_TABLE_NAME, false, NULL,
            ARRAY[OLD.org_id, NEW.org_id]::text[], ARRAY[OLD.user_id, NEW.user_id]::text[]);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION orgperm.notify_data_access_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    role_orgs text[];
    o text[];
    u text[];
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        IF TG_OP = 'UPDATE' AND (OLD.org_id, OLD.user_id, OLD.role_id, OLD.resource_type, OLD.resource_id)
           IS NOT DISTINCT FROM (NEW.org_id, NEW.user_id, NEW.role_id, NEW.resource_type, NEW.resource_id) THEN
            RETURN NULL;
        END IF;
        IF OLD.user_id IS NOT NULL THEN
            o := ARRAY[OLD.org_id]::text[];
            u := ARRAY[OLD.user_id]::text[];
        ELSIF TG_OP = 'UPDATE' OR EXISTS (SELECT FROM ONLY orgperm.roles r WHERE r.id = OLD.role_id) THEN
            role_orgs := ARRAY[OLD.org_id]::text[];
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.user_id IS NOT NULL THEN
            o := o || NEW.org_id::text;
            u := u || NEW.user_id::text;
        ELSE
            role_orgs := role_orgs || NEW.org_id::text;
        END IF;
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
CREATE FUNCTION orgperm.evict_member(org_id text, user_id text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT orgperm.emit('evict', false, NULL, ARRAY[org_id], ARRAY[user_id]);
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION orgperm.evict_org(org_id text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT orgperm.emit('evict', false, ARRAY[org_id]);
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION orgperm.evict_user(user_id text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT orgperm.emit('evict', false, NULL, NULL, NULL, ARRAY[user_id]);
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION orgperm.evict_all() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT orgperm.emit('evict', true);
$$;
-- +goose StatementEnd

-- DDL on an object of schema orgperm (a table, a column, a trigger, a
-- policy, a function, the schema itself): everything, as source "ddl". Run
-- by the event triggers orgperm_ddl_notify (ddl_command_end) and
-- orgperm_ddl_notify_drop (sql_drop). Triggers, policies and rules have no
-- schema of their own: they count when their table is in orgperm.
-- +goose StatementBegin
CREATE FUNCTION orgperm.notify_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_EVENT = 'sql_drop' THEN
        IF EXISTS (SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() d
                   WHERE d.schema_name = 'orgperm' OR d.address_names[1] = 'orgperm') THEN
            PERFORM orgperm.emit('ddl', true);
        END IF;
    ELSIF EXISTS (SELECT FROM pg_catalog.pg_event_trigger_ddl_commands() c
                  WHERE c.schema_name = 'orgperm'
                     OR CASE WHEN c.schema_name IS NULL AND c.object_type IN ('trigger', 'policy', 'rule', 'schema')
                             THEN (pg_catalog.pg_identify_object_as_address(c.classid, c.objid, c.objsubid)).object_names[1] = 'orgperm'
                        END) THEN
        PERFORM orgperm.emit('ddl', true);
    END IF;
END
$$;
-- +goose StatementEnd

-- orgperm.fingerprint changes whenever an orgperm table is dropped or
-- (re)created (a restore included), a trigger on one is created, dropped,
-- enabled, disabled or altered, a function of schema orgperm is created,
-- replaced or dropped, or a DDL event trigger comes or goes. It hashes the
-- OID and xmin of those catalog rows: the pg_depend rows that tie objects
-- to schema orgperm (CREATE OR REPLACE FUNCTION writes them anew), the
-- pg_trigger rows of the six tables and the pg_event_trigger rows. Every
-- change to a catalog row gives it a new xmin, so a disable then enable
-- between two calls still changes it. Ordinary DML, TRUNCATE, ANALYZE and
-- VACUUM of the tables (FREEZE and FULL too) leave it alone. ALTER FUNCTION (SECURITY
-- INVOKER, SET, OWNER) does not change it: the event triggers report that,
-- and orgperm.inspect() finds it. Index scans over about a hundred catalog
-- rows: tens of microseconds. The value is opaque text: compare it, never
-- parse it.
-- +goose StatementBegin
CREATE FUNCTION orgperm.fingerprint() RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tables constant oid[] := ARRAY[
        pg_catalog.to_regclass('orgperm.permissions'), pg_catalog.to_regclass('orgperm.roles'),
        pg_catalog.to_regclass('orgperm.role_permissions'), pg_catalog.to_regclass('orgperm.memberships'),
        pg_catalog.to_regclass('orgperm.membership_roles'), pg_catalog.to_regclass('orgperm.data_access')];
BEGIN
    RETURN (
        -- An order-free 64-bit hash sum (no sort): a third cheaper than an md5
        -- of the sorted rows; a change goes unseen with probability 2^-64.
        SELECT count(*)::text || ':' || coalesce(sum(pg_catalog.hashtextextended(x.p, 0)), 0)::text FROM (
            SELECT 'd' || d.classid::text || '.' || d.objid::text || ':' || d.xmin::text AS p
            FROM pg_catalog.pg_depend d
            WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.refobjsubid = 0
              AND d.refobjid = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = 'orgperm')
            UNION ALL
            SELECT 't' || t.oid::text || ':' || t.xmin::text FROM pg_catalog.pg_trigger t
            WHERE t.tgrelid = ANY (tables)
            UNION ALL
            SELECT 'e' || e.oid::text || ':' || e.xmin::text FROM pg_catalog.pg_event_trigger e
            WHERE e.evtname IN ('orgperm_ddl_notify', 'orgperm_ddl_notify_drop')
            UNION ALL
            -- What the wal transport decodes: its publication, the tables
            -- in it, and the tables' replica identities.
            SELECT 'P' || pb.oid::text || ':' || pb.xmin::text FROM pg_catalog.pg_publication pb
            WHERE pb.pubname = 'orgperm_wal'
            UNION ALL
            SELECT 'r' || pr.oid::text || ':' || pr.xmin::text
            FROM pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_publication pb ON pb.oid = pr.prpubid
            WHERE pb.pubname = 'orgperm_wal'
            UNION ALL
            SELECT 'i' || c.oid::text || ':' || c.relreplident::text FROM pg_catalog.pg_class c
            WHERE c.oid = ANY (tables)
        ) x
    );
END
$$;
-- +goose StatementEnd

-- The notify triggers this file creates and the mode each must be enabled
-- in (O: ordinary sessions, the default; R: replica sessions; A: always).
-- orgperm.inspect() checks the database against this list, and the last
-- block of this file checks that the CREATE TRIGGER statements below match
-- it, so the two cannot drift apart. (This function and the two digest
-- functions below have no SET clause, so that inspect() can inline them
-- and plan once; inspect() runs them under its pinned search_path.)
-- +goose StatementBegin
CREATE FUNCTION orgperm.expected_triggers()
RETURNS TABLE (table_name text, trigger_name text, enabled text, function_name text)
LANGUAGE sql IMMUTABLE AS $$
    VALUES
        ('permissions', 'permissions_notify_update', 'O', 'notify_permissions'),
        ('permissions', 'permissions_notify_delete', 'O', 'notify_permissions'),
        ('permissions', 'permissions_notify_truncate', 'A', 'notify_truncate'),
        ('permissions', 'permissions_notify_replica', 'R', 'notify_permissions_row'),
        ('roles', 'roles_notify_update', 'O', 'notify_roles'),
        ('roles', 'roles_notify_delete', 'O', 'notify_roles'),
        ('roles', 'roles_notify_truncate', 'A', 'notify_truncate'),
        ('roles', 'roles_notify_replica', 'R', 'notify_roles_row'),
        ('role_permissions', 'role_permissions_notify_insert', 'O', 'notify_role_permissions'),
        ('role_permissions', 'role_permissions_notify_update', 'O', 'notify_role_permissions'),
        ('role_permissions', 'role_permissions_notify_delete', 'O', 'notify_role_permissions'),
        ('role_permissions', 'role_permissions_notify_truncate', 'A', 'notify_truncate'),
        ('role_permissions', 'role_permissions_notify_replica', 'R', 'notify_role_permissions_row'),
        ('memberships', 'memberships_notify_insert', 'O', 'notify_memberships'),
        ('memberships', 'memberships_notify_update', 'O', 'notify_memberships'),
        ('memberships', 'memberships_notify_delete', 'O', 'notify_memberships'),
        ('memberships', 'memberships_notify_truncate', 'A', 'notify_truncate'),
        ('memberships', 'memberships_notify_replica', 'R', 'notify_memberships_row'),
        ('membership_roles', 'membership_roles_notify_insert', 'O', 'notify_membership_roles'),
        ('membership_roles', 'membership_roles_notify_update', 'O', 'notify_membership_roles'),
        ('membership_roles', 'membership_roles_notify_delete', 'O', 'notify_membership_roles'),
        ('membership_roles', 'membership_roles_notify_truncate', 'A', 'notify_truncate'),
        ('membership_roles', 'membership_roles_notify_replica', 'R', 'notify_membership_roles_row'),
        ('data_access', 'data_access_notify_insert', 'O', 'notify_data_access'),
        ('data_access', 'data_access_notify_update', 'O', 'notify_data_access'),
        ('data_access', 'data_access_notify_delete', 'O', 'notify_data_access'),
        ('data_access', 'data_access_notify_truncate', 'A', 'notify_truncate'),
        ('data_access', 'data_access_notify_replica', 'R', 'notify_data_access_row')
$$;
-- +goose StatementEnd

-- orgperm.reset_trigger_modes puts every notify trigger back in its mode
-- (ENABLE, ENABLE REPLICA or ENABLE ALWAYS, as expected_triggers() says).
-- ALTER TABLE ... ENABLE TRIGGER ALL or USER puts every trigger in mode O,
-- and so does `pg_restore --disable-triggers` when it re-enables them:
-- inspect() then reports the replica and TRUNCATE triggers; this repairs
-- them. With the wal transport it disables them instead: the relay decodes
-- every change from the WAL. It needs the tables' owner (it runs ALTER
-- TABLE).
-- +goose StatementBegin
CREATE FUNCTION orgperm.reset_trigger_modes() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    x record;
    wal constant boolean := orgperm.transport() IS NOT DISTINCT FROM 'wal';
BEGIN
    FOR x IN SELECT * FROM orgperm.expected_triggers() LOOP
        IF wal THEN
            EXECUTE pg_catalog.format('ALTER TABLE orgperm.%I DISABLE TRIGGER %I', x.table_name, x.trigger_name);
        ELSE
            EXECUTE pg_catalog.format('ALTER TABLE orgperm.%I ENABLE %s TRIGGER %I', x.table_name,
                CASE x.enabled WHEN 'R' THEN 'REPLICA' WHEN 'A' THEN 'ALWAYS' ELSE '' END, x.trigger_name);
        END IF;
    END LOOP;
END
$$;
-- +goose StatementEnd

-- The functions invalidation runs (trigger functions and what they call),
-- by name: each must be SECURITY DEFINER with the pinned search_path, and
-- unchanged since this file installed it; another function of one of these
-- names (an overload that could capture a call) is an error too.
-- +goose StatementBegin
CREATE FUNCTION orgperm.expected_functions() RETURNS SETOF name
LANGUAGE sql IMMUTABLE AS $$
    SELECT pg_catalog.unnest(ARRAY[
        'setting_int', 'emit', 'list_bytes', 'emit_chunks', 'emit_roles', 'notify_truncate', 'prove', 'relay',
        'relay_emit',
        'notify_permissions', 'notify_roles', 'notify_role_permissions', 'notify_memberships',
        'notify_membership_roles', 'notify_data_access', 'notify_permissions_row', 'notify_roles_row',
        'notify_role_permissions_row', 'notify_memberships_row', 'notify_membership_roles_row',
        'notify_data_access_row', 'notify_ddl'
    ]::name[]);
$$;
-- +goose StatementEnd

-- orgperm.current_digests: a digest of each expected trigger's definition
-- (everything but its enabled mode, which inspect reports by itself) and of
-- each expected function's definition. The last block of this file stores
-- what it returns right after installing, as orgperm.installed_digests().
-- Call it through inspect() (object names depend on the search_path).
-- +goose StatementBegin
CREATE FUNCTION orgperm.current_digests() RETURNS TABLE (object text, digest text)
LANGUAGE sql STABLE AS $$
    SELECT 'trigger ' || x.trigger_name || ' on orgperm.' || x.table_name,
           pg_catalog.md5(pg_catalog.concat_ws('|', t.tgtype, t.tgfoid::pg_catalog.regprocedure, t.tgoldtable,
                t.tgnewtable, t.tgattr, t.tgqual IS NULL, t.tgnargs, t.tgargs, t.tgdeferrable, t.tginitdeferred))
    FROM orgperm.expected_triggers() x
    JOIN pg_catalog.pg_class c ON c.relname = x.table_name::name
         AND c.relnamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = 'orgperm')
    JOIN pg_catalog.pg_trigger t ON t.tgrelid = c.oid AND t.tgname = x.trigger_name::name
    UNION ALL
    SELECT 'function ' || p.oid::pg_catalog.regprocedure::text,
           pg_catalog.md5(pg_catalog.concat_ws('|', p.prosrc, p.prosecdef, p.proconfig, p.provolatile,
                p.prolang, p.prorettype, p.proretset, p.prokind))
    FROM orgperm.expected_functions() f
    JOIN pg_catalog.pg_proc p ON p.proname = f
         AND p.pronamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = 'orgperm');
$$;
-- +goose StatementEnd

-- orgperm.inspect lists what keeps the cache from trusting the triggers, one
-- row per problem; no rows means whole. Severity 'error': invalidation is
-- broken or cannot be vouched for (a table, notify trigger or invalidation
-- function missing; a trigger disabled or not in its mode; a trigger or
-- function changed since the migration installed it; a function that is not
-- SECURITY DEFINER or lacks its pinned search_path). Severity 'warning':
-- worth an operator's attention, the cache still correct (no DDL event
-- trigger; a table inheriting from an orgperm table, whose rows are not part
-- of the model; FORCE ROW LEVEL SECURITY on an orgperm table, which would
-- filter the triggers' lookups unless the owner bypasses it; another trigger
-- on an orgperm table disabled, foreign keys included). One query over the
-- catalogs.
-- +goose StatementBegin
CREATE FUNCTION orgperm.inspect() RETURNS TABLE (severity text, object text, problem text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY
    WITH nsp AS (
        SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = 'orgperm'
    ), tables AS (
        SELECT DISTINCT x.table_name FROM orgperm.expected_triggers() x
    ), rels AS (
        SELECT tb.table_name, c.oid, c.relforcerowsecurity
        FROM tables tb LEFT JOIN pg_catalog.pg_class c
          ON c.relname = tb.table_name AND c.relnamespace = (SELECT oid FROM nsp) AND c.relkind IN ('r', 'p')
    ), mode AS (
        SELECT orgperm.transport() IS NOT DISTINCT FROM 'wal' AS wal
    ), trig AS (
        SELECT x.table_name, x.trigger_name,
               CASE WHEN (SELECT wal FROM mode) THEN 'D' ELSE x.enabled END AS enabled,
               t.tgenabled::text AS actual, t.oid AS tgoid, r.oid AS relid
        FROM orgperm.expected_triggers() x
        JOIN rels r ON r.table_name = x.table_name
        LEFT JOIN pg_catalog.pg_trigger t ON t.tgrelid = r.oid AND t.tgname = x.trigger_name
    ), funcs AS (
        SELECT p.oid, p.oid::pg_catalog.regprocedure::text AS sig, p.prosecdef, p.proconfig
        FROM orgperm.expected_functions() f
        JOIN pg_catalog.pg_proc p ON p.proname = f AND p.pronamespace = (SELECT oid FROM nsp)
    ), problems AS (
        SELECT 'error' AS severity, 'table orgperm.' || r.table_name AS object, 'table missing' AS problem, 1 AS ord
        FROM rels r WHERE r.oid IS NULL
        UNION ALL
        SELECT 'error', 'trigger ' || g.trigger_name || ' on orgperm.' || g.table_name,
               CASE WHEN g.tgoid IS NULL THEN 'notify trigger missing'
                    WHEN g.enabled = 'D' THEN 'notify trigger enabled while the transport is wal (every write pays for it); '
                                              'SELECT orgperm.reset_trigger_modes() disables it'
                    WHEN g.actual = 'D' THEN 'notify trigger disabled'
                    ELSE pg_catalog.format('notify trigger enabled in mode %s, expected %s (O: origin, R: replica, A: always); '
                                           'SELECT orgperm.reset_trigger_modes() repairs it', g.actual, g.enabled) END, 2
        FROM trig g WHERE g.relid IS NOT NULL AND g.actual IS DISTINCT FROM g.enabled
        UNION ALL
        SELECT 'error', i.object, 'changed since the migration installed it (restore it by migrating again)', 3
        FROM orgperm.installed_digests() i
        JOIN orgperm.current_digests() d ON d.object = i.object
        WHERE d.digest <> i.digest
        UNION ALL
        SELECT 'error', i.object, 'function missing', 3
        FROM orgperm.installed_digests() i
        WHERE i.object LIKE 'function %'
          AND NOT EXISTS (SELECT FROM orgperm.current_digests() d WHERE d.object = i.object)
        UNION ALL
        SELECT 'error', 'function ' || f.sig,
               'not installed by the migration: another function of an invalidation function''s name can capture its calls', 3
        FROM funcs f
        WHERE NOT EXISTS (SELECT FROM orgperm.installed_digests() i WHERE i.object = 'function ' || f.sig)
        UNION ALL
        SELECT 'error', 'function ' || f.sig,
               CASE WHEN NOT f.prosecdef THEN 'not SECURITY DEFINER'
                    ELSE 'search_path not pinned to pg_catalog, pg_temp' END, 4
        FROM funcs f
        WHERE NOT f.prosecdef OR NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (f.proconfig), false)
        UNION ALL
        SELECT 'error', 'function orgperm.send(text, text)',
               'missing, overloaded or not a body orgperm.set_transport installs (run SELECT orgperm.set_transport(''notify''))', 4
        WHERE orgperm.transport() IS NULL
        UNION ALL
        SELECT 'error', 'setting wal_level',
               'the transport is wal and wal_level is ' || pg_catalog.current_setting('wal_level') || ', not logical: nothing can be decoded', 4
        WHERE (SELECT wal FROM mode) AND pg_catalog.current_setting('wal_level') <> 'logical'
        UNION ALL
        SELECT 'error', 'publication orgperm_wal',
               CASE WHEN pb.oid IS NULL THEN 'missing: the wal transport decodes nothing (SELECT orgperm.set_transport(''wal'') creates it)'
                    ELSE 'does not publish every insert, update, delete and truncate of orgperm.' || r.table_name
                         || ' (DROP PUBLICATION orgperm_wal, then SELECT orgperm.set_transport(''wal''))' END, 4
        FROM rels r
        LEFT JOIN pg_catalog.pg_publication pb ON pb.pubname = 'orgperm_wal'
        WHERE (SELECT wal FROM mode) AND r.oid IS NOT NULL
          AND (pb.oid IS NULL OR NOT (pb.pubinsert AND pb.pubupdate AND pb.pubdelete AND pb.pubtruncate)
               OR NOT (pb.puballtables OR EXISTS (
                   -- A row filter or a column list (PostgreSQL 15) would hide changes.
                   SELECT FROM pg_catalog.pg_publication_rel pr
                   WHERE pr.prpubid = pb.oid AND pr.prrelid = r.oid
                     AND pg_catalog.to_jsonb(pr) ->> 'prqual' IS NULL AND pg_catalog.to_jsonb(pr) ->> 'prattrs' IS NULL)))
        UNION ALL
        SELECT 'error', 'table orgperm.' || r.table_name,
               'REPLICA IDENTITY is not FULL: the wal transport cannot tell a deleted row''s scope (SELECT orgperm.set_transport(''wal'') sets it)', 4
        FROM rels r JOIN pg_catalog.pg_class c ON c.oid = r.oid
        WHERE (SELECT wal FROM mode) AND r.table_name IN ('roles', 'data_access') AND c.relreplident <> 'f'
        UNION ALL
        SELECT 'warning', 'event trigger ' || w.name,
               CASE WHEN e.oid IS NULL THEN 'DDL event trigger missing: DDL on orgperm''s tables notifies nothing (only orgperm.fingerprint() changes)'
                    ELSE pg_catalog.format('DDL event trigger enabled in mode %s, expected A (always)', e.evtenabled) END, 5
        FROM (VALUES ('orgperm_ddl_notify'), ('orgperm_ddl_notify_drop')) w(name)
        LEFT JOIN pg_catalog.pg_event_trigger e ON e.evtname = w.name
        WHERE e.oid IS NULL OR e.evtenabled <> 'A'
        UNION ALL
        SELECT 'warning', 'table ' || i.inhrelid::pg_catalog.regclass::text,
               'inherits from orgperm.' || r.table_name || ': its rows are not part of the model and notify nothing', 6
        FROM rels r JOIN pg_catalog.pg_inherits i ON i.inhparent = r.oid
        UNION ALL
        SELECT 'warning', 'table orgperm.' || r.table_name,
               'FORCE ROW LEVEL SECURITY: the triggers'' lookups are filtered unless the schema owner bypasses row-level security', 7
        FROM rels r WHERE r.relforcerowsecurity
        UNION ALL
        SELECT 'warning', 'trigger ' || t.tgname || ' on orgperm.' || r.table_name,
               CASE WHEN t.tgisinternal THEN 'internal trigger disabled (a foreign key is not enforced)'
                    ELSE 'trigger disabled' END, 8
        FROM rels r JOIN pg_catalog.pg_trigger t ON t.tgrelid = r.oid
        WHERE t.tgenabled = 'D'
          AND NOT EXISTS (SELECT FROM orgperm.expected_triggers() x WHERE x.trigger_name = t.tgname AND x.table_name = r.table_name)
    )
    SELECT p.severity, p.object, p.problem FROM problems p ORDER BY p.ord, p.object;
END
$$;
-- +goose StatementEnd

-- Nobody calls these but the triggers and the functions above (which run as
-- the schema owner). The orgperm.evict_* functions, fingerprint, inspect and
-- schema_version stay callable by everyone, as before.
REVOKE EXECUTE ON FUNCTION
    orgperm.setting_int(text, integer),
    orgperm.emit(text, boolean, text[], text[], text[], text[], boolean),
    orgperm.list_bytes(text[]),
    orgperm.emit_chunks(text, text[], boolean),
    orgperm.send(text, text),
    orgperm.set_transport(text),
    orgperm.emit_roles(text, bigint[]),
    orgperm.notify_truncate(),
    orgperm.notify_permissions(),
    orgperm.notify_roles(),
    orgperm.notify_role_permissions(),
    orgperm.notify_memberships(),
    orgperm.notify_membership_roles(),
    orgperm.notify_data_access(),
    orgperm.notify_permissions_row(),
    orgperm.notify_roles_row(),
    orgperm.notify_role_permissions_row(),
    orgperm.notify_memberships_row(),
    orgperm.notify_membership_roles_row(),
    orgperm.notify_data_access_row(),
    orgperm.notify_ddl()
FROM PUBLIC;

-- Statement-level triggers, for ordinary sessions: one per event (transition
-- tables allow no more), plus TRUNCATE, which fires in every session.
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

ALTER TABLE orgperm.permissions ENABLE ALWAYS TRIGGER permissions_notify_truncate;
ALTER TABLE orgperm.roles ENABLE ALWAYS TRIGGER roles_notify_truncate;
ALTER TABLE orgperm.role_permissions ENABLE ALWAYS TRIGGER role_permissions_notify_truncate;
ALTER TABLE orgperm.memberships ENABLE ALWAYS TRIGGER memberships_notify_truncate;
ALTER TABLE orgperm.membership_roles ENABLE ALWAYS TRIGGER membership_roles_notify_truncate;
ALTER TABLE orgperm.data_access ENABLE ALWAYS TRIGGER data_access_notify_truncate;

-- Row-level triggers, for replica sessions only (ENABLE REPLICA). As with
-- the statement-level ones, an INSERT into permissions or roles changes
-- nothing, so those two tables have no INSERT event.
CREATE TRIGGER permissions_notify_replica AFTER UPDATE OR DELETE ON orgperm.permissions
    FOR EACH ROW EXECUTE FUNCTION orgperm.notify_permissions_row();
CREATE TRIGGER roles_notify_replica AFTER UPDATE OR DELETE ON orgperm.roles
    FOR EACH ROW EXECUTE FUNCTION orgperm.notify_roles_row();
CREATE TRIGGER role_permissions_notify_replica AFTER INSERT OR UPDATE OR DELETE ON orgperm.role_permissions
    FOR EACH ROW EXECUTE FUNCTION orgperm.notify_role_permissions_row();
CREATE TRIGGER memberships_notify_replica AFTER INSERT OR UPDATE OR DELETE ON orgperm.memberships
    FOR EACH ROW EXECUTE FUNCTION orgperm.notify_memberships_row();
CREATE TRIGGER membership_roles_notify_replica AFTER INSERT OR UPDATE OR DELETE ON orgperm.membership_roles
    FOR EACH ROW EXECUTE FUNCTION orgperm.notify_membership_roles_row();
CREATE TRIGGER data_access_notify_replica AFTER INSERT OR UPDATE OR DELETE ON orgperm.data_access
    FOR EACH ROW EXECUTE FUNCTION orgperm.notify_data_access_row();

ALTER TABLE orgperm.permissions ENABLE REPLICA TRIGGER permissions_notify_replica;
ALTER TABLE orgperm.roles ENABLE REPLICA TRIGGER roles_notify_replica;
ALTER TABLE orgperm.role_permissions ENABLE REPLICA TRIGGER role_permissions_notify_replica;
ALTER TABLE orgperm.memberships ENABLE REPLICA TRIGGER memberships_notify_replica;
ALTER TABLE orgperm.membership_roles ENABLE REPLICA TRIGGER membership_roles_notify_replica;
ALTER TABLE orgperm.data_access ENABLE REPLICA TRIGGER data_access_notify_replica;

-- DDL event triggers: only a superuser can create them.
-- +goose StatementBegin
DO $$
BEGIN
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        CREATE EVENT TRIGGER orgperm_ddl_notify ON ddl_command_end EXECUTE FUNCTION orgperm.notify_ddl();
        ALTER EVENT TRIGGER orgperm_ddl_notify ENABLE ALWAYS;
        CREATE EVENT TRIGGER orgperm_ddl_notify_drop ON sql_drop EXECUTE FUNCTION orgperm.notify_ddl();
        ALTER EVENT TRIGGER orgperm_ddl_notify_drop ENABLE ALWAYS;
    ELSE
        RAISE NOTICE 'orgperm: % is not a superuser, so no DDL event trigger is installed: DDL on orgperm''s tables will not notify; clients rely on orgperm.fingerprint() to notice it', current_user;
    END IF;
END
$$;
-- +goose StatementEnd

-- Last: check that the triggers created above are exactly those of
-- orgperm.expected_triggers() (names, tables, modes, functions), then record
-- what was installed as orgperm.installed_digests(), against which
-- orgperm.inspect() reports later changes.
-- +goose StatementBegin
DO $$
DECLARE
    drift text;
    installed text;
    saved_path constant text := pg_catalog.current_setting('search_path');
BEGIN
    -- The digests name objects as inspect() does, under its search_path.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    SELECT string_agg(pg_catalog.concat_ws(' ', coalesce(x.table_name, a.table_name), coalesce(x.trigger_name, a.trigger_name)), ', ')
      INTO drift
      FROM orgperm.expected_triggers() x
      FULL JOIN (
        SELECT c.relname::text AS table_name, t.tgname::text AS trigger_name, t.tgenabled::text AS enabled,
               p.proname::text AS function_name
        FROM pg_catalog.pg_trigger t
        JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
        JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
        WHERE c.relnamespace = 'orgperm'::pg_catalog.regnamespace AND t.tgname LIKE '%\_notify\_%'
      ) a ON a.table_name = x.table_name AND a.trigger_name = x.trigger_name
         AND a.enabled = x.enabled AND a.function_name = x.function_name
     WHERE x.trigger_name IS NULL OR a.trigger_name IS NULL;
    IF drift IS NOT NULL THEN
        RAISE EXCEPTION 'orgperm: sql/triggers.sql: the triggers created and orgperm.expected_triggers() differ: %', drift;
    END IF;
    SELECT string_agg(pg_catalog.format('(%L, %L)', d.object, d.digest), ', ' ORDER BY d.object)
      INTO installed FROM orgperm.current_digests() d;
    EXECUTE pg_catalog.format(
        'CREATE FUNCTION orgperm.installed_digests() RETURNS TABLE (object text, digest text) '
        'LANGUAGE sql IMMUTABLE AS %L', 'VALUES ' || installed);
    PERFORM pg_catalog.set_config('search_path', saved_path, true);
END
$$;
-- +goose StatementEnd

-- The transport the database had before this file ran (see its top).
-- +goose StatementBegin
DO $$
BEGIN
    IF pg_catalog.current_setting('orgperm.upgrade_transport', true) IN ('queue', 'wal') THEN
        PERFORM orgperm.set_transport(pg_catalog.current_setting('orgperm.upgrade_transport', true));
    END IF;
END
$$;
-- +goose StatementEnd

-- Running instances purge: the definitions changed (with the event triggers
-- installed, creating installed_digests above sent the same payload, which
-- PostgreSQL folds into this one).
SELECT orgperm.emit('ddl', true);
