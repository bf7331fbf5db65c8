-- Sources of inbound webhooks: a provider (Stripe, GitHub, …) posts to
-- /ingest/{id}; what it sends, once its signature is verified, becomes a
-- message of the source's application. A source goes with its tenant and
-- its application.
CREATE TABLE source (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    app_id             TEXT NOT NULL REFERENCES application (id) ON DELETE CASCADE,
    description        TEXT NOT NULL DEFAULT '',
    -- "stripe", "github", "shopify", "slack", {"standard": {…}} or {"hmac": {…}}.
    provider           JSONB NOT NULL,
    -- The secret as a JSON string, or {"$sealed": "…"} under a main key.
    secret             JSONB NOT NULL,
    tolerance_seconds  INTEGER NOT NULL,
    metadata           JSONB NOT NULL DEFAULT '{}',
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX source_tenant_id_id_idx ON source (tenant_id, id);
-- For the cascade when an application is deleted.
CREATE INDEX source_app_id_idx ON source (app_id);
