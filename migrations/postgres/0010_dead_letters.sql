-- The dead-letter view: an application's (or an endpoint's) dead deliveries,
-- newest message first, read by keyset on (msg_id, endpoint_id). Partial, so
-- it holds only dead rows and costs the hot path nothing but the state change.
CREATE INDEX delivery_dead_app_idx ON delivery (tenant_id, app_id, msg_id, endpoint_id)
    WHERE state = 'dead';
CREATE INDEX delivery_dead_endpoint_idx ON delivery (tenant_id, endpoint_id, msg_id)
    WHERE state = 'dead';
