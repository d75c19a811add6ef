-- Retention deletes old log lines oldest first (headwater db prune, the
-- server's retention): without this, finding them reads every line.
CREATE INDEX logs_timestamp ON logs (timestamp);
