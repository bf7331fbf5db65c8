-- Delivery statistics (the stats service): per endpoint and time bucket, the
-- outcome counters of its attempts and a histogram of their latencies
-- (HdrHistogram, V2 deflate encoding; see herald-core's `stats`). Minute
-- buckets are merged into hour buckets once they are old enough.

CREATE TABLE endpoint_stats (
    tenant_id     TEXT NOT NULL,
    app_id        TEXT NOT NULL,
    endpoint_id   TEXT COLLATE "C" NOT NULL,
    granularity   TEXT NOT NULL CHECK (granularity IN ('minute', 'hour')),
    bucket_start  TIMESTAMPTZ NOT NULL,
    attempts      BIGINT NOT NULL,
    successes     BIGINT NOT NULL,
    timeout       BIGINT NOT NULL,
    connect       BIGINT NOT NULL,
    dns           BIGINT NOT NULL,
    tls           BIGINT NOT NULL,
    blocked       BIGINT NOT NULL,
    http3xx       BIGINT NOT NULL,
    http4xx       BIGINT NOT NULL,
    http5xx       BIGINT NOT NULL,
    other         BIGINT NOT NULL,
    latency       BYTEA NOT NULL,
    PRIMARY KEY (endpoint_id, granularity, bucket_start)
);
-- App-level queries (every endpoint of an application in a window).
CREATE INDEX endpoint_stats_tenant_id_app_id_granularity_bucket_start_idx
    ON endpoint_stats (tenant_id, app_id, granularity, bucket_start);
-- The roll-up's scan for old minute buckets.
CREATE INDEX endpoint_stats_minute_bucket_start_idx
    ON endpoint_stats (bucket_start) WHERE granularity = 'minute';

-- Attempts already counted, so a batch delivered again (after a crash between
-- the commit and the ack) is not counted twice. Pruned by the roll-up.
CREATE TABLE stats_seen (
    attempt_id  TEXT COLLATE "C" PRIMARY KEY,
    seen_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX stats_seen_seen_at_idx ON stats_seen (seen_at);
