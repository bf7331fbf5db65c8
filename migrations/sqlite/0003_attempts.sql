-- Delivery attempts (see migrations/postgres/0003_attempts.sql): one row per
-- HTTP request made (or refused) for a delivery. Written in the same
-- transaction as the delivery's new state, so the attempt log and the state
-- machine never disagree.

CREATE TABLE message_attempt (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    app_id         TEXT NOT NULL,
    msg_id         TEXT NOT NULL REFERENCES message (id) ON DELETE CASCADE,
    endpoint_id    TEXT NOT NULL,
    url            TEXT NOT NULL,
    -- 0 when no HTTP response was received (see error_class).
    status_code    INTEGER NOT NULL,
    -- timeout | connect | dns | tls | blocked | 3xx | 4xx | 5xx | invalid | other
    error_class    TEXT,
    -- The start of the response body; NULL once expunged.
    response_body  TEXT,
    duration_ms    INTEGER NOT NULL,
    -- scheduled | manual
    trigger        TEXT NOT NULL,
    created_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX message_attempt_tenant_id_msg_id_id_idx ON message_attempt (tenant_id, msg_id, id);
CREATE INDEX message_attempt_tenant_id_endpoint_id_id_idx ON message_attempt (tenant_id, endpoint_id, id);
