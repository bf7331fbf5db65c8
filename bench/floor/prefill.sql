-- Messages with one delivery each in state 'sending', as accept.sql leaves
-- them, for record.sql, record-async.sql and targets.sql to work on: :m per
-- client for :clients clients (psql variables), ids as accept.sql makes
-- them. Then VACUUM ANALYZE, so the runs find hint bits set and statistics.
TRUNCATE message CASCADE;
INSERT INTO message (id, tenant_id, app_id, event_id, event_type, payload, created_at,
    expires_at)
SELECT 'msg_' || lpad(i::text, 24, '0') || '_' || c, 'ten_floor', 'app_floor',
    'evt_msg_' || lpad(i::text, 24, '0') || '_' || c, 'bench.event',
    convert_to('{"seq":1000000,"sentAtUs":1765000000000000,"pad":"' || repeat('x', 248)
        || '"}', 'UTF8'),
    now(), now() + interval '30 days'
FROM generate_series(1, :m) AS i, generate_series(0, :clients - 1) AS c
ORDER BY i, c;
INSERT INTO delivery (msg_id, endpoint_id, tenant_id, app_id, state, attempts,
    next_attempt_at, created_at, updated_at)
SELECT id, 'ep_floor', tenant_id, app_id, 'sending', 0, created_at, created_at, created_at
FROM message ORDER BY id;
VACUUM ANALYZE message, delivery, message_attempt;
