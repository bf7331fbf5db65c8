-- Retention; see migrations/postgres/0013_retention.sql.
CREATE INDEX IF NOT EXISTS message_payload_expires_at_idx ON message (expires_at)
    WHERE payload IS NOT NULL;

CREATE INDEX IF NOT EXISTS message_attempt_msg_id_id_idx ON message_attempt (msg_id, id);
DROP INDEX IF EXISTS message_attempt_tenant_id_msg_id_id_idx;

CREATE TABLE job_lease (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
