-- Herald's initial schema for SQLite (the embedded mode), mirroring
-- migrations/postgres/0001_initial.sql: same tables, columns and constraint
-- semantics, in SQLite types. STRICT tables refuse values of the wrong type,
-- as PostgreSQL would.
--
-- Type mapping: TIMESTAMPTZ -> INTEGER microseconds since the Unix epoch (UTC),
-- so comparisons and ORDER BY are numeric and exact; BOOLEAN -> INTEGER 0/1;
-- JSONB -> TEXT holding JSON; BYTEA -> BLOB. Text keys compare bytewise: the
-- default BINARY collation is what COLLATE "C" is in PostgreSQL, so base62 ids
-- sort by time. Unique violations are reported by the store under the names
-- PostgreSQL gives these constraints (`{table}_pkey`, `{table}_{columns}_key`).

CREATE TABLE tenant (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE api_key (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    -- The first characters of the key, shown in listings so people can tell keys apart.
    prefix      TEXT NOT NULL,
    -- SHA-256 of the whole key; the key itself is never stored.
    key_hash    BLOB NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX api_key_tenant_id_idx ON api_key (tenant_id, id);

-- Server-wide values generated once and shared by every process (e.g. the JWT
-- secret when none is configured).
CREATE TABLE server_setting (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) STRICT;

CREATE TABLE application (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    uid            TEXT,
    name           TEXT NOT NULL,
    metadata       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    throttle_rate  INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    -- application_tenant_id_uid_key
    UNIQUE (tenant_id, uid)
) STRICT;
CREATE INDEX application_tenant_id_id_idx ON application (tenant_id, id);

CREATE TABLE event_type (
    tenant_id     TEXT NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    archived      INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1)),
    deprecated    INTEGER NOT NULL DEFAULT 0 CHECK (deprecated IN (0, 1)),
    feature_flag  TEXT,
    schemas       TEXT CHECK (schemas IS NULL OR json_valid(schemas)),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    -- event_type_pkey
    PRIMARY KEY (tenant_id, name)
) STRICT;

CREATE TABLE endpoint (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    app_id         TEXT NOT NULL REFERENCES application (id) ON DELETE CASCADE,
    uid            TEXT,
    url            TEXT NOT NULL,
    description    TEXT NOT NULL DEFAULT '',
    version        INTEGER NOT NULL DEFAULT 1,
    disabled       INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    -- JSON arrays, as in PostgreSQL.
    event_types    TEXT CHECK (event_types IS NULL OR json_valid(event_types)),
    channels       TEXT CHECK (channels IS NULL OR json_valid(channels)),
    metadata       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    throttle_rate  INTEGER,
    headers        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(headers)),
    -- {"current": "whsec_…", "previous": [{"key": "whsec_…", "expiresAt": "…"}]}
    secrets        TEXT NOT NULL CHECK (json_valid(secrets)),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    -- endpoint_app_id_uid_key
    UNIQUE (app_id, uid)
) STRICT;
CREATE INDEX endpoint_tenant_id_app_id_id_idx ON endpoint (tenant_id, app_id, id);
