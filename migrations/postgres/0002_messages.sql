-- Messages and their deliveries. A message's deliveries are written in the same
-- transaction as the message (a transactional outbox): whatever was answered
-- 202 has a `delivery` row per matching endpoint, and a delivery that is not
-- finished is found again from this table after any crash.

CREATE TABLE message (
    id           TEXT COLLATE "C" PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    app_id       TEXT NOT NULL REFERENCES application (id) ON DELETE CASCADE,
    event_id     TEXT,
    event_type   TEXT NOT NULL,
    channels     JSONB,
    tags         JSONB,
    -- The payload exactly as the client sent it; NULL once expunged.
    payload      BYTEA,
    created_at   TIMESTAMPTZ NOT NULL,
    -- When the payload may be removed by retention.
    expires_at   TIMESTAMPTZ NOT NULL,
    CONSTRAINT message_app_id_event_id_key UNIQUE (app_id, event_id)
);
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
    next_attempt_at  TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    CONSTRAINT delivery_pkey PRIMARY KEY (msg_id, endpoint_id)
);
-- The reconciler's scan: unfinished deliveries by due time.
CREATE INDEX delivery_unfinished_due_idx ON delivery (next_attempt_at)
    WHERE state IN ('pending', 'sending');
CREATE INDEX delivery_tenant_id_endpoint_id_idx ON delivery (tenant_id, endpoint_id, msg_id);
