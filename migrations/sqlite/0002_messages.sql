-- Messages and their deliveries (see migrations/postgres/0002_messages.sql).
-- A message's deliveries are written in the same transaction as the message
-- (a transactional outbox): whatever was answered 202 has a `delivery` row per
-- matching endpoint, and a delivery that is not finished is found again from
-- this table after any crash.

CREATE TABLE message (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    app_id       TEXT NOT NULL REFERENCES application (id) ON DELETE CASCADE,
    event_id     TEXT,
    event_type   TEXT NOT NULL,
    channels     TEXT CHECK (channels IS NULL OR json_valid(channels)),
    tags         TEXT CHECK (tags IS NULL OR json_valid(tags)),
    -- The payload exactly as the client sent it; NULL once expunged.
    payload      BLOB,
    created_at   INTEGER NOT NULL,
    -- When the payload may be removed by retention.
    expires_at   INTEGER NOT NULL,
    -- message_app_id_event_id_key
    UNIQUE (app_id, event_id)
) STRICT;
CREATE INDEX message_tenant_id_app_id_id_idx ON message (tenant_id, app_id, id);

CREATE TABLE delivery (
    msg_id           TEXT NOT NULL REFERENCES message (id) ON DELETE CASCADE,
    -- No foreign key: deleting an endpoint must not erase delivery history.
    endpoint_id      TEXT NOT NULL,
    tenant_id        TEXT NOT NULL,
    app_id           TEXT NOT NULL,
    -- pending | sending | succeeded | failed | dead
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    -- delivery_pkey
    PRIMARY KEY (msg_id, endpoint_id)
) STRICT;
-- The relay's scan: unfinished deliveries by due time.
CREATE INDEX delivery_unfinished_due_idx ON delivery (next_attempt_at)
    WHERE state IN ('pending', 'sending');
CREATE INDEX delivery_tenant_id_endpoint_id_idx ON delivery (tenant_id, endpoint_id, msg_id);
