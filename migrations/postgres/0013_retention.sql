-- Retention (`herald_store::Retention`, run by one worker at a time).
--
-- Payloads past their `expires_at` are set to NULL in batches: this partial
-- index holds only the messages whose payload is still there, so the
-- expiry finds the due ones without scanning the expired history.
CREATE INDEX IF NOT EXISTS message_payload_expires_at_idx ON message (expires_at)
    WHERE payload IS NOT NULL;

-- Old messages and attempts are deleted by id range (ids are time-ordered):
-- the primary keys find them. Deleting a message cascades to its attempts,
-- which needs an index led by `msg_id`; the listing of a message's attempts
-- (`tenant_id = $1 AND msg_id = $2 ORDER BY id`) is served by it just as
-- well, since a message id names one tenant's message, so it replaces the
-- index led by `tenant_id` instead of adding a fourth to the hot insert.
CREATE INDEX IF NOT EXISTS message_attempt_msg_id_id_idx ON message_attempt (msg_id, id);
DROP INDEX IF EXISTS message_attempt_tenant_id_msg_id_id_idx;

-- Leases of jobs that one process of a deployment runs at a time: a holder
-- renews its lease while it works; another takes it over once it lapses.
CREATE TABLE job_lease (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
