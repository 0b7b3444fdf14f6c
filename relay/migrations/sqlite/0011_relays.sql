-- Several relays on one database (README "Several relays"): the registry of relays, and
-- the relay that owns each session (it asked consent, splices and records it). A relay
-- started without --relay-name is named 'default', and the sessions from before this
-- migration are its own.

CREATE TABLE relays (
    name TEXT PRIMARY KEY NOT NULL,
    -- The QUIC address agents use to reach this relay (HOST:PORT); NULL: not advertised.
    address TEXT,
    started_at INTEGER NOT NULL,
    -- Refreshed every 2 s while the relay runs.
    heartbeat_at INTEGER NOT NULL,
    -- Set when the relay stopped gracefully.
    stopped_at INTEGER,
    -- Set by another relay that saw the heartbeat stale and ended this one's sessions.
    lost_at INTEGER
);

ALTER TABLE sessions ADD COLUMN relay TEXT NOT NULL DEFAULT 'default';
CREATE INDEX sessions_open_by_relay ON sessions (relay) WHERE state IN ('requested', 'approved', 'active');
