-- The worker's reads for a batch of :n tasks: Herald's delivery_targets
-- (crates/herald-store/src/delivery.rs), three statements, each its own
-- transaction: the deliveries, their messages (with the payload) and their
-- endpoints, each by `= ANY` of a list of keys. Herald binds the lists as
-- text[] parameters; here ARRAY(SELECT … generate_series) builds them.
--
-- Reads prefilled messages (see pg-floor.sh), walking each client's
-- sequentially and wrapping around: variables n (batch size), t (the
-- client's batch counter, start 0) and blocks (batches prefilled per
-- client), all given with -D.
\set t :t + 1
\set j 1 + :t % :blocks
SELECT * FROM delivery
WHERE msg_id = ANY (ARRAY(
        SELECT 'msg_' || lpad(((:j::bigint - 1) * :n::int + g)::text, 24, '0')
                   || '_' || :client_id::int
        FROM generate_series(1, :n::int) AS g))
  AND endpoint_id = ANY ('{ep_floor}'::text[]);
SELECT * FROM message
WHERE id = ANY (ARRAY(
        SELECT 'msg_' || lpad(((:j::bigint - 1) * :n::int + g)::text, 24, '0')
                   || '_' || :client_id::int
        FROM generate_series(1, :n::int) AS g));
SELECT id, app_id, uid, url, description, version, disabled, event_types, channels,
       metadata, throttle_rate, headers, secrets, created_at, updated_at, tenant_id
FROM endpoint WHERE id = ANY ('{ep_floor}'::text[]);
