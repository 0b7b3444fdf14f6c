-- Several relays (issue 18): where each agent is connected, one row per agent and relay,
-- instead of one `agents.online` flag that every relay overwrote (the last relay to write
-- won, so an agent connected to two relays read as offline when one of them lost it).
-- A relay inserts its row when the agent connects to it and deletes it when the
-- connection ends; a relay declared lost has its rows deleted with its sessions' ending,
-- a relay that stops or starts again deletes its own. An agent is online when a relay
-- that is neither stopped nor lost has a row for it. The single relay is 'default'.
-- No foreign key, as for sessions: agents are never deleted, and the table stays
-- independent of rebuilds of `agents`.
CREATE TABLE agent_presence (
    agent TEXT NOT NULL,
    relay TEXT NOT NULL,
    -- When this relay's current connection of the agent was stored (Unix ms): a
    -- disconnection deletes only the row of its own connection.
    since INTEGER NOT NULL,
    PRIMARY KEY (agent, relay)
) STRICT;
CREATE INDEX agent_presence_by_relay ON agent_presence (relay);

-- What the flag said, kept for a single relay (the only writer it had); in a cluster the
-- flag was not trustworthy, and the relays rewrite their rows as agents reconnect.
INSERT INTO agent_presence (agent, relay, since)
    SELECT name, 'default', COALESCE(last_seen, 0) FROM agents
    WHERE online = 1 AND NOT EXISTS (SELECT 1 FROM relays);

ALTER TABLE agents DROP COLUMN online;
