-- Several relays (issue 18), see migrations/sqlite/0012_bus.sql for the escalation column.
ALTER TABLE sessions ADD COLUMN escalation TEXT;

-- The relays' bus (relay/src/bus): a message too large for a NOTIFY payload (8,000 bytes)
-- is kept here and the notification carries its id. Rows older than a minute are deleted
-- by the next large message; none holds a key or a secret.
CREATE TABLE bus_messages (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
