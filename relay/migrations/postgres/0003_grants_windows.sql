-- Grants on sessions and maintenance windows (see migrations/sqlite/0003_grants_windows.sql).

ALTER TABLE sessions ADD COLUMN duration_secs BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN granted TEXT;
ALTER TABLE sessions ADD COLUMN grant_expires_at BIGINT;

CREATE TABLE windows (
    id TEXT PRIMARY KEY NOT NULL,
    org TEXT NOT NULL REFERENCES orgs (name),
    agent TEXT,
    schedule TEXT NOT NULL,
    duration_secs BIGINT NOT NULL,
    capabilities TEXT NOT NULL,
    engineers TEXT NOT NULL,
    note TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    removed_at BIGINT
);

CREATE INDEX windows_by_org ON windows (org) WHERE removed_at IS NULL;

-- Agents may now announce the `window` consent mode.
ALTER TABLE agents DROP CONSTRAINT agents_consent_check;
ALTER TABLE agents ADD CONSTRAINT agents_consent_check CHECK (consent IN ('prompt', 'approver', 'window'));
