-- Manual attempts (resend, recover) go through the outbox like scheduled ones
-- (see migrations/postgres/0004_manual_attempts.sql): the API marks the
-- delivery due now with `manual` set, the relay hands it out, and the attempt
-- that answers it clears the flag.
ALTER TABLE delivery ADD COLUMN manual INTEGER NOT NULL DEFAULT 0 CHECK (manual IN (0, 1));
