-- The web console's sign-in state (see migrations/sqlite/0010_console.sql). `user` is a
-- reserved word in PostgreSQL: the queries quote it ("user") in both dialects.

CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    "user" TEXT NOT NULL,
    stage TEXT NOT NULL CHECK (stage IN ('code', 'enrol', 'full')),
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions ("user");

CREATE TABLE user_totp (
    "user" TEXT PRIMARY KEY NOT NULL,
    secret BYTEA,
    pending BYTEA,
    last_step BIGINT,
    confirmed_at BIGINT
);

CREATE TABLE recovery_codes (
    "user" TEXT NOT NULL,
    hash TEXT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY ("user", hash)
);

CREATE TABLE users_disabled (
    "user" TEXT PRIMARY KEY NOT NULL,
    disabled_at BIGINT NOT NULL
);

CREATE TABLE cli_tokens (
    jti TEXT PRIMARY KEY NOT NULL,
    "user" TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX cli_tokens_user ON cli_tokens ("user");
