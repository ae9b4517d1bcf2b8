-- +goose Down
DROP FUNCTION orgperm.notify_permissions() CASCADE;
DROP FUNCTION orgperm.notify_roles() CASCADE;
DROP FUNCTION orgperm.notify_role_permissions() CASCADE;
DROP FUNCTION orgperm.notify_memberships() CASCADE;
DROP FUNCTION orgperm.notify_membership_roles() CASCADE;
DROP FUNCTION orgperm.notify_data_access() CASCADE;
DROP FUNCTION orgperm.notify_truncate() CASCADE;
DROP FUNCTION orgperm.evict_member(text, text);
DROP FUNCTION orgperm.evict_org(text);
DROP FUNCTION orgperm.evict_user(text);
DROP FUNCTION orgperm.evict_all();
DROP FUNCTION orgperm.emit_roles(text, bigint[]);
DROP FUNCTION orgperm.emit(text, boolean, text[], text[], text[], text[]);
DROP FUNCTION orgperm.emit_chunks(text, text[]);
DROP FUNCTION orgperm.list_bytes(text[]);
