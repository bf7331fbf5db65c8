-- The headers of each attempt's request and response, as JSON objects
-- (name → value), for the attempt log and the console. Sensitive values are
-- stored redacted; NULL for attempts made before this migration, for
-- attempts that got no response (response_headers), and once expunged.
ALTER TABLE message_attempt ADD COLUMN request_headers TEXT;
ALTER TABLE message_attempt ADD COLUMN response_headers TEXT;
