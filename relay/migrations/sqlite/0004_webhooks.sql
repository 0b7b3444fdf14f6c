-- Outgoing webhooks (relay/src/webhook, docs/webhooks.md): the configured hooks, the
-- queue of deliveries, and the cursor up to which the audit log has been turned into
-- deliveries. A delivery is queued in the same transaction that moves the cursor, so a
-- relay restart neither loses nor queues twice; sending is at least once.

CREATE TABLE webhooks (
    id TEXT PRIMARY KEY NOT NULL,
    org TEXT NOT NULL REFERENCES orgs (name),
    url TEXT NOT NULL,
    -- JSON array of audit action names; NULL means the default set, resolved when events
    -- are matched (so that kinds added to the default later reach existing hooks).
    events TEXT,
    format TEXT NOT NULL CHECK (format IN ('json', 'chat')),
    -- The HMAC key shared with the receiver. Kept in clear because signing needs it; the
    -- database file is as private as the relay's keys.
    secret TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- Only audit events after this sequence number (the hook's own `webhook.added`) are sent.
    after_seq INTEGER NOT NULL,
    removed_at INTEGER
) STRICT;

CREATE TABLE webhook_deliveries (
    -- Sent as X-Assist-Delivery: the same on every attempt, for the receiver to de-duplicate.
    id TEXT PRIMARY KEY NOT NULL,
    webhook TEXT NOT NULL REFERENCES webhooks (id),
    event_seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    session TEXT,
    -- The exact body sent on every attempt.
    body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    UNIQUE (webhook, event_seq)
) STRICT;

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';

-- One row: audit events up to `after_seq` have been matched against the hooks.
CREATE TABLE webhook_cursor (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    after_seq INTEGER NOT NULL
) STRICT;

-- History before this migration is not sent anywhere.
INSERT INTO webhook_cursor (id, after_seq) VALUES (1, (SELECT COALESCE(MAX(seq), 0) FROM audit_events));
