-- record.sql with synchronous_commit off for its transaction (SET LOCAL), as
-- the design considers for attempt records: a record lost in a crash means
-- another attempt, never a lost message. SET LOCAL needs an explicit
-- transaction, so this sends three statements more than record.sql (BEGIN,
-- SET LOCAL, COMMIT), each a round trip. Variables as in record.sql.
\set j :j + 1
BEGIN;
SET LOCAL synchronous_commit = off;
WITH l AS (
    SELECT lpad(((:j::bigint - 1) * :n::int + g)::text, 24, '0') || '_' || :client_id::int AS i,
           now() AS at
    FROM generate_series(1, :n::int) AS g),
a AS (
    INSERT INTO message_attempt (id, tenant_id, app_id, msg_id, endpoint_id, url,
        status_code, error_class, response_body, duration_ms, trigger, created_at,
        duration_us)
    SELECT 'atmpt_' || l.i, 'ten_floor', 'app_floor', 'msg_' || l.i, 'ep_floor',
        'http://127.0.0.1:9000/e/0', 200, NULL, '', 1, 'scheduled', l.at, 1000
    FROM l)
UPDATE delivery SET
    state = CASE WHEN delivery.manual AND u.trigger <> 'manual'
        THEN delivery.state ELSE u.state END,
    next_attempt_at = CASE WHEN delivery.manual AND u.trigger <> 'manual'
        THEN delivery.next_attempt_at ELSE u.next_at END,
    manual = delivery.manual AND u.trigger <> 'manual',
    attempts = delivery.attempts + 1, updated_at = u.at
FROM (SELECT 'ten_floor' AS tenant_id, 'msg_' || l.i AS msg_id, 'ep_floor' AS endpoint_id,
             'succeeded' AS state, NULL::timestamptz AS next_at, 'scheduled' AS trigger,
             l.at
      FROM l) AS u
WHERE delivery.tenant_id = u.tenant_id AND delivery.msg_id = u.msg_id
  AND delivery.endpoint_id = u.endpoint_id;
COMMIT;
