-- Attempt durations in microseconds, so stats computed from the attempt log
-- are as exact as the latency histograms (milliseconds are too coarse for
-- fast endpoints). `duration_ms` stays, written alongside, for old readers.
ALTER TABLE message_attempt ADD COLUMN duration_us BIGINT NOT NULL DEFAULT 0;
