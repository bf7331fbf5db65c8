-- Delivery statistics (see migrations/postgres/0005_stats.sql): per endpoint
-- and time bucket, the outcome counters of its attempts and a histogram of
-- their latencies. Timestamps are integer microseconds since the epoch.

CREATE TABLE endpoint_stats (
    tenant_id     TEXT NOT NULL,
    app_id        TEXT NOT NULL,
    endpoint_id   TEXT NOT NULL,
    granularity   TEXT NOT NULL CHECK (granularity IN ('minute', 'hour')),
    bucket_start  INTEGER NOT NULL,
    attempts      INTEGER NOT NULL,
    successes     INTEGER NOT NULL,
    timeout       INTEGER NOT NULL,
    connect       INTEGER NOT NULL,
    dns           INTEGER NOT NULL,
    tls           INTEGER NOT NULL,
    blocked       INTEGER NOT NULL,
    http3xx       INTEGER NOT NULL,
    http4xx       INTEGER NOT NULL,
    http5xx       INTEGER NOT NULL,
    other         INTEGER NOT NULL,
    latency       BLOB NOT NULL,
    PRIMARY KEY (endpoint_id, granularity, bucket_start)
) STRICT;
-- App-level queries (every endpoint of an application in a window).
CREATE INDEX endpoint_stats_tenant_id_app_id_granularity_bucket_start_idx
    ON endpoint_stats (tenant_id, app_id, granularity, bucket_start);
-- The roll-up's scan for old minute buckets.
CREATE INDEX endpoint_stats_minute_bucket_start_idx
    ON endpoint_stats (bucket_start) WHERE granularity = 'minute';

-- Attempts already counted, so a batch delivered again is not counted twice.
CREATE TABLE stats_seen (
    attempt_id  TEXT PRIMARY KEY,
    seen_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX stats_seen_seen_at_idx ON stats_seen (seen_at);
