-- The floor of accepting a batch: what Herald's insert_messages
-- (crates/herald-store/src/delivery.rs) writes for :n messages with one
-- endpoint each, in one statement and so one transaction: :n message rows
-- (a 300-byte payload each) and :n delivery rows, the deliveries only for
-- the messages stored (ON CONFLICT on the eventId). Herald binds the rows
-- as arrays and unnests them; here they come from generate_series.
--
-- Variables: n (batch size) and k (the client's batch counter, start 0),
-- both given with -D. Message ids are msg_<i, 24 digits>_<client>, i the
-- client's message counter, so they sort by time like Herald's ksuids.
\set k :k + 1
WITH l AS (
    SELECT 'msg_' || lpad(((:k::bigint - 1) * :n::int + g)::text, 24, '0')
               || '_' || :client_id::int AS id,
           now() AS at
    FROM generate_series(1, :n::int) AS g),
m AS (
    INSERT INTO message (id, tenant_id, app_id, event_id, event_type, channels, tags,
        payload, created_at, expires_at)
    SELECT l.id, 'ten_floor', 'app_floor', 'evt_' || l.id, 'bench.event', NULL, NULL,
        '{"seq":1000000,"sentAtUs":1765000000000000,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'::bytea, l.at, l.at + interval '30 days'
    FROM l
    ON CONFLICT (app_id, event_id) DO NOTHING RETURNING id),
d AS (
    INSERT INTO delivery (msg_id, endpoint_id, tenant_id, app_id, state, attempts,
        next_attempt_at, created_at, updated_at)
    SELECT l.id, 'ep_floor', 'ten_floor', 'app_floor', 'sending', 0, l.at, l.at, l.at
    FROM l JOIN m ON m.id = l.id)
SELECT id FROM m;
