-- Endpoint health, written by the workers outside the endpoint's version
-- (`updated_at` does not move): consecutive failed attempts, since when the
-- endpoint has failed without a success between, and until when its circuit
-- breaker is open. Enabling a disabled endpoint through the API resets them.
-- `disabled_at` / `disabled_reason` say when and why it was disabled.
ALTER TABLE endpoint ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE endpoint ADD COLUMN failing_since INTEGER;
ALTER TABLE endpoint ADD COLUMN breaker_open_until INTEGER;
ALTER TABLE endpoint ADD COLUMN disabled_at INTEGER;
ALTER TABLE endpoint ADD COLUMN disabled_reason TEXT;
