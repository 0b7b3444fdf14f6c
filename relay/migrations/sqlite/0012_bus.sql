-- Several relays (issue 18): a session's pending escalation is kept in its row, written with
-- its audit event, so every relay of a cluster lists it (JSON of assist_proto::msg::Escalation,
-- NULL when none is waiting). One relay on SQLite writes it too and reads it only back.
ALTER TABLE sessions ADD COLUMN escalation TEXT;
