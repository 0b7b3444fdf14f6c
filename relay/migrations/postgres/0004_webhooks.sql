-- Outgoing webhooks (see migrations/sqlite/0004_webhooks.sql).

CREATE TABLE webhooks (
    id TEXT PRIMARY KEY NOT NULL,
    org TEXT NOT NULL REFERENCES orgs (name),
    url TEXT NOT NULL,
    events TEXT,
    format TEXT NOT NULL CHECK (format IN ('json', 'chat')),
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    after_seq BIGINT NOT NULL,
    removed_at BIGINT
);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY NOT NULL,
    webhook TEXT NOT NULL REFERENCES webhooks (id),
    event_seq BIGINT NOT NULL,
    event TEXT NOT NULL,
    session TEXT,
    body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_status BIGINT,
    last_error TEXT,
    UNIQUE (webhook, event_seq)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';

CREATE TABLE webhook_cursor (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    after_seq BIGINT NOT NULL
);

INSERT INTO webhook_cursor (id, after_seq) VALUES (1, (SELECT COALESCE(MAX(seq), 0) FROM audit_events));
