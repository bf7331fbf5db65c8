-- Herald's initial schema: tenants, their keys, and the management resources of
-- the Svix-compatible API. Keys that listings page through (ids, event-type
-- names) use the "C" collation: base62 ids must sort bytewise to sort by time. Every resource row carries tenant_id so that every
-- query can be scoped by tenant (see ARCHITECTURE.md, "tenant first").

CREATE TABLE tenant (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_key (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    -- The first characters of the key, shown in listings so people can tell keys apart.
    prefix      TEXT NOT NULL,
    -- SHA-256 of the whole key; the key itself is never stored.
    key_hash    BYTEA NOT NULL CONSTRAINT api_key_key_hash_key UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX api_key_tenant_id_idx ON api_key (tenant_id, id);

-- Server-wide values generated once and shared by every process (e.g. the JWT
-- secret when none is configured).
CREATE TABLE server_setting (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE application (
    id             TEXT COLLATE "C" PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    uid            TEXT,
    name           TEXT NOT NULL,
    metadata       JSONB NOT NULL DEFAULT '{}',
    throttle_rate  INTEGER,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT application_tenant_id_uid_key UNIQUE (tenant_id, uid)
);
CREATE INDEX application_tenant_id_id_idx ON application (tenant_id, id);

CREATE TABLE event_type (
    tenant_id     TEXT NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    name          TEXT COLLATE "C" NOT NULL,
    description   TEXT NOT NULL,
    archived      BOOLEAN NOT NULL DEFAULT false,
    deprecated    BOOLEAN NOT NULL DEFAULT false,
    feature_flag  TEXT,
    schemas       JSONB,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT event_type_pkey PRIMARY KEY (tenant_id, name)
);

CREATE TABLE endpoint (
    id             TEXT COLLATE "C" PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    app_id         TEXT NOT NULL REFERENCES application (id) ON DELETE CASCADE,
    uid            TEXT,
    url            TEXT NOT NULL,
    description    TEXT NOT NULL DEFAULT '',
    version        INTEGER NOT NULL DEFAULT 1,
    disabled       BOOLEAN NOT NULL DEFAULT false,
    -- JSON arrays rather than TEXT[] so the SQLite schema can mirror this one.
    event_types    JSONB,
    channels       JSONB,
    metadata       JSONB NOT NULL DEFAULT '{}',
    throttle_rate  INTEGER,
    headers        JSONB NOT NULL DEFAULT '{}',
    -- {"current": "whsec_…", "previous": [{"key": "whsec_…", "expiresAt": "…"}]}
    secrets        JSONB NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT endpoint_app_id_uid_key UNIQUE (app_id, uid)
);
CREATE INDEX endpoint_tenant_id_app_id_id_idx ON endpoint (tenant_id, app_id, id);
