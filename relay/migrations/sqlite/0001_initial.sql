-- The relay's state: organisations, users, join tokens, agents and sessions.
-- Timestamps are Unix milliseconds (INTEGER). Tables are STRICT so that a value of the
-- wrong type is an error rather than silently stored.

CREATE TABLE orgs (
    name TEXT PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- `vendor`'s engineers may ask for sessions on `customer`'s agents.
CREATE TABLE org_support (
    customer TEXT NOT NULL REFERENCES orgs (name),
    vendor TEXT NOT NULL REFERENCES orgs (name),
    PRIMARY KEY (customer, vendor)
) STRICT;

CREATE TABLE users (
    name TEXT PRIMARY KEY NOT NULL,
    org TEXT NOT NULL REFERENCES orgs (name),
    role TEXT NOT NULL CHECK (role IN ('engineer', 'approver', 'auditor', 'admin')),
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- Only the SHA-256 of a token is kept: a copy of the database does not let anyone enroll.
CREATE TABLE join_tokens (
    hash TEXT PRIMARY KEY NOT NULL,
    org TEXT NOT NULL REFERENCES orgs (name),
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE agents (
    name TEXT PRIMARY KEY NOT NULL,
    org TEXT NOT NULL REFERENCES orgs (name),
    cert_fingerprint TEXT NOT NULL UNIQUE,
    enrolled_at INTEGER NOT NULL,
    revoked_at INTEGER,
    last_seen INTEGER,
    consent TEXT CHECK (consent IN ('prompt', 'approver')),
    online INTEGER NOT NULL DEFAULT 0 CHECK (online IN (0, 1))
) STRICT;

-- Sessions are history: they name users and agents without foreign keys, so that the
-- record outlives whatever it names.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    engineer TEXT NOT NULL,
    engineer_org TEXT NOT NULL,
    agent TEXT NOT NULL,
    agent_org TEXT NOT NULL,
    ticket TEXT NOT NULL,
    priority TEXT NOT NULL,
    reason TEXT NOT NULL,
    -- JSON array of assist_proto::caps::Capability
    capabilities TEXT NOT NULL,
    state TEXT NOT NULL,
    approver TEXT,
    requested_at INTEGER NOT NULL,
    consent_deadline INTEGER NOT NULL,
    decided_at INTEGER,
    started_at INTEGER,
    ended_at INTEGER,
    end_reason TEXT
) STRICT;

CREATE INDEX sessions_by_requested_at ON sessions (requested_at);
CREATE INDEX sessions_not_final ON sessions (state) WHERE state IN ('requested', 'approved', 'active');
