-- The audit log: one row per security-relevant event, appended in the same transaction as
-- the state change it describes. Each row carries the previous row's hash and its own
-- (SHA-256 over every column, see relay/src/audit.rs), so `assist-relay audit verify`
-- detects any later change. `seq` runs 1, 2, 3... without gaps; the store computes it and
-- `prev_hash` inside a write (`BEGIN IMMEDIATE`) transaction, so concurrent writers (the
-- relay and the admin commands) extend one chain.

CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY NOT NULL CHECK (seq > 0),
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    org TEXT,
    action TEXT NOT NULL,
    target TEXT,
    session TEXT,
    -- JSON object, hashed as this exact text.
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
) STRICT;

CREATE INDEX audit_events_by_at ON audit_events (at);
CREATE INDEX audit_events_by_session ON audit_events (session) WHERE session IS NOT NULL;
CREATE INDEX audit_events_by_org ON audit_events (org) WHERE org IS NOT NULL;

-- Append-only for everything that goes through SQL. Not a defence against someone who can
-- write the file (they can drop these triggers): the hash chain is what detects that.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
