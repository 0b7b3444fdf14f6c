-- The relay's state on PostgreSQL: the same tables as migrations/sqlite/0001_initial.sql.
-- Timestamps are Unix milliseconds (BIGINT, so that they bind as i64 as in SQLite).

CREATE TABLE orgs (
    name TEXT PRIMARY KEY NOT NULL,
    created_at BIGINT NOT NULL
);

-- `vendor`'s engineers may ask for sessions on `customer`'s agents.
CREATE TABLE org_support (
    customer TEXT NOT NULL REFERENCES orgs (name),
    vendor TEXT NOT NULL REFERENCES orgs (name),
    PRIMARY KEY (customer, vendor)
);

CREATE TABLE users (
    name TEXT PRIMARY KEY NOT NULL,
    org TEXT NOT NULL REFERENCES orgs (name),
    role TEXT NOT NULL CHECK (role IN ('engineer', 'approver', 'auditor', 'admin')),
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Only the SHA-256 of a token is kept: a copy of the database does not let anyone enroll.
CREATE TABLE join_tokens (
    hash TEXT PRIMARY KEY NOT NULL,
    org TEXT NOT NULL REFERENCES orgs (name),
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE agents (
    name TEXT PRIMARY KEY NOT NULL,
    org TEXT NOT NULL REFERENCES orgs (name),
    cert_fingerprint TEXT NOT NULL UNIQUE,
    enrolled_at BIGINT NOT NULL,
    revoked_at BIGINT,
    last_seen BIGINT,
    consent TEXT CHECK (consent IN ('prompt', 'approver')),
    online BOOLEAN NOT NULL DEFAULT FALSE
);

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
    requested_at BIGINT NOT NULL,
    consent_deadline BIGINT NOT NULL,
    decided_at BIGINT,
    started_at BIGINT,
    ended_at BIGINT,
    end_reason TEXT,
    -- Insertion order, under SQLite's name for it: the shared queries break ties between
    -- requests made in the same millisecond with `rowid`.
    rowid BIGINT GENERATED ALWAYS AS IDENTITY
);

CREATE INDEX sessions_by_requested_at ON sessions (requested_at);
CREATE INDEX sessions_not_final ON sessions (state) WHERE state IN ('requested', 'approved', 'active');
