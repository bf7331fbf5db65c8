-- App-scoped tokens logged out before they expire (POST /api/v1/auth/logout).
-- A row is needed only until the token's own expiry, after which the token is
-- refused anyway; expired rows are deleted as new ones are written.
CREATE TABLE revoked_token (
    token_id    TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX revoked_token_expires_at ON revoked_token (expires_at);
