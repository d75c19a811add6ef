CREATE TABLE automations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT,
    enabled     INTEGER NOT NULL,
    trigger     TEXT NOT NULL,
    actions     TEXT NOT NULL,
    created     INTEGER NOT NULL,
    updated     INTEGER NOT NULL
);
CREATE TABLE automation_deliveries (
    id            TEXT PRIMARY KEY,
    automation_id TEXT NOT NULL REFERENCES automations (id) ON DELETE CASCADE,
    event_key     TEXT NOT NULL,
    action_index  INTEGER NOT NULL,
    action        TEXT NOT NULL,
    event         TEXT NOT NULL,
    status        TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    next_attempt  INTEGER NOT NULL,
    last_error    TEXT,
    last_error_at INTEGER,
    delivered     INTEGER,
    created       INTEGER NOT NULL,
    UNIQUE (automation_id, event_key, action_index)
);
CREATE INDEX automation_deliveries_due ON automation_deliveries (status, next_attempt);
CREATE INDEX automation_deliveries_by_automation ON automation_deliveries (automation_id, created DESC);
CREATE TABLE engine_cursors (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
)
