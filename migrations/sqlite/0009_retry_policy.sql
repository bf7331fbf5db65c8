-- Retry policies set on an application or an endpoint (`retryPolicy`), in the
-- herald-core `RetryPolicySpec` serde form. NULL inherits: an endpoint's unset
-- parts come from its application, the application's from the server.
ALTER TABLE application ADD COLUMN retry_policy TEXT
    CHECK (retry_policy IS NULL OR json_valid(retry_policy));
ALTER TABLE endpoint ADD COLUMN retry_policy TEXT
    CHECK (retry_policy IS NULL OR json_valid(retry_policy));
