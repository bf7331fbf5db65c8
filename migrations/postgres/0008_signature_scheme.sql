-- How an endpoint's deliveries are signed (`signatureScheme`), in the
-- herald-signature serde form: "ed25519", "stripe", {"hmac": {...}}, ….
-- NULL is the default, Standard Webhooks with the endpoint's whsec_ secret.
ALTER TABLE endpoint ADD COLUMN signature_scheme JSONB;
