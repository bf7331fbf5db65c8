-- Sources of inbound webhooks: a provider (Stripe, GitHub, …) posts to
-- /ingest/{id}; what it sends, once its signature is verified, becomes a
-- message of the source's application. A source goes with its tenant and
-- its application.
CREATE TABLE source (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    app_id             TEXT NOT NULL REFERENCES application (id) ON DELETE CASCADE,
    description        TEXT NOT NULL DEFAULT '',
    -- "stripe", "github", "shopify", "slack", {"standard": {…}} or {"hmac": {…}}.
    provider           TEXT NOT NULL CHECK (json_valid(provider)),
    -- The secret as a JSON string, or {"$sealed": "…"} under a main key.
    secret             TEXT NOT NULL CHECK (json_valid(secret)),
    tolerance_seconds  INTEGER NOT NULL,
    metadata           TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) STRICT;
CREATE INDEX source_tenant_id_id_idx ON source (tenant_id, id);
-- For the cascade when an application is deleted.
CREATE INDEX source_app_id_idx ON source (app_id);
