-- The web console's sign-in state: sessions, authenticators, recovery codes, and users
-- who may no longer sign in.

-- A console session. The browser's cookie holds a random value; only its SHA-256 is kept,
-- so a copy of the database does not let anyone in.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    user TEXT NOT NULL,
    stage TEXT NOT NULL CHECK (stage IN ('code', 'enrol', 'full')),
    source TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
) STRICT;
CREATE INDEX console_sessions_user ON console_sessions (user);

-- A user's TOTP authenticator. `pending` is a secret being set up (replaced by each new
-- start, moved to `secret` when confirmed with a code from it). `last_step` is the last
-- time step accepted, so a code is never accepted twice.
CREATE TABLE user_totp (
    user TEXT PRIMARY KEY NOT NULL,
    secret BLOB,
    pending BLOB,
    last_step INTEGER,
    confirmed_at INTEGER
) STRICT;

-- One-time recovery codes, hashed (SHA-256 of the normalised code).
CREATE TABLE recovery_codes (
    user TEXT NOT NULL,
    hash TEXT NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (user, hash)
) STRICT;

-- Users who may no longer sign in (console or CLI).
CREATE TABLE users_disabled (
    user TEXT PRIMARY KEY NOT NULL,
    disabled_at INTEGER NOT NULL
) STRICT;

-- Tokens issued to the CLI by `assist login`, by their `jti`, so that one user's tokens
-- can be revoked at once (`assist-relay user disable` / `user remove`). A token whose
-- id is not here, or is revoked, is refused.
CREATE TABLE cli_tokens (
    jti TEXT PRIMARY KEY NOT NULL,
    user TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
CREATE INDEX cli_tokens_user ON cli_tokens (user);
