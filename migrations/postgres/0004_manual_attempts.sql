-- Manual attempts (resend, recover) go through the outbox like scheduled ones:
-- the API marks the delivery due now with `manual` set, the relay hands it
-- out, and the attempt that answers it clears the flag. So a resend accepted
-- with 202 survives any restart, like a message does.
ALTER TABLE delivery ADD COLUMN manual BOOLEAN NOT NULL DEFAULT false;
