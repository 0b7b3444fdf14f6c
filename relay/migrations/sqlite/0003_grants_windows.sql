-- Grants on sessions (issue 5): what was granted, until when, and for how long the
-- engineer asked; and the organisations' pre-approved maintenance windows.

ALTER TABLE sessions ADD COLUMN duration_secs INTEGER NOT NULL DEFAULT 0;
-- JSON array of assist_proto::caps::Capability: the current grant (NULL before approval).
ALTER TABLE sessions ADD COLUMN granted TEXT;
ALTER TABLE sessions ADD COLUMN grant_expires_at INTEGER;

CREATE TABLE windows (
    id TEXT PRIMARY KEY NOT NULL,
    org TEXT NOT NULL REFERENCES orgs (name),
    -- NULL: every agent of the organisation.
    agent TEXT,
    -- Cron expression (5 fields, UTC) of each window's start.
    schedule TEXT NOT NULL,
    duration_secs INTEGER NOT NULL,
    -- JSON array of capabilities a request may be granted inside the window.
    capabilities TEXT NOT NULL,
    -- JSON array of engineer names allowed to use the window.
    engineers TEXT NOT NULL,
    note TEXT,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    removed_at INTEGER
) STRICT;

CREATE INDEX windows_by_org ON windows (org) WHERE removed_at IS NULL;

-- Agents may now announce the `window` consent mode. SQLite cannot change a CHECK
-- constraint in place: the table is rebuilt (nothing references it).
CREATE TABLE agents_v3 (
    name TEXT PRIMARY KEY NOT NULL,
    org TEXT NOT NULL REFERENCES orgs (name),
    cert_fingerprint TEXT NOT NULL UNIQUE,
    enrolled_at INTEGER NOT NULL,
    revoked_at INTEGER,
    last_seen INTEGER,
    consent TEXT CHECK (consent IN ('prompt', 'approver', 'window')),
    online INTEGER NOT NULL DEFAULT 0 CHECK (online IN (0, 1))
) STRICT;
INSERT INTO agents_v3 (name, org, cert_fingerprint, enrolled_at, revoked_at, last_seen, consent, online)
    SELECT name, org, cert_fingerprint, enrolled_at, revoked_at, last_seen, consent, online FROM agents;
DROP TABLE agents;
ALTER TABLE agents_v3 RENAME TO agents;
