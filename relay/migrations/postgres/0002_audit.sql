-- The audit log (see migrations/sqlite/0002_audit.sql for what each column holds).
-- `seq` runs 1, 2, 3... without gaps across every relay on this database: each writing
-- transaction first locks the one row of `audit_head` (`SELECT ... FOR UPDATE`), then
-- reads the newest event and appends the next, so writers take turns on the chain.

CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY NOT NULL CHECK (seq > 0),
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    org TEXT,
    action TEXT NOT NULL,
    target TEXT,
    session TEXT,
    -- JSON object, hashed as this exact text.
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE INDEX audit_events_by_at ON audit_events (at);
CREATE INDEX audit_events_by_session ON audit_events (session) WHERE session IS NOT NULL;
CREATE INDEX audit_events_by_org ON audit_events (org) WHERE org IS NOT NULL;

-- The lock every write takes first. It holds nothing else: the newest event is read from
-- `audit_events` once the lock is held.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1)
);
INSERT INTO audit_head (id) VALUES (1);

-- Append-only for everything that goes through SQL. Not a defence against the database's
-- owner (they can drop these triggers): the hash chain is what detects that.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
