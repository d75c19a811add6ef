CREATE TABLE automations (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT,
    enabled     BOOLEAN NOT NULL,
    trigger     JSONB NOT NULL,
    actions     JSONB NOT NULL,
    created     TIMESTAMPTZ NOT NULL,
    updated     TIMESTAMPTZ NOT NULL
);
CREATE TABLE automation_deliveries (
    id            UUID PRIMARY KEY,
    automation_id UUID NOT NULL REFERENCES automations (id) ON DELETE CASCADE,
    event_key     TEXT NOT NULL,
    action_index  INTEGER NOT NULL,
    action        JSONB NOT NULL,
    event         JSONB NOT NULL,
    status        TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    next_attempt  TIMESTAMPTZ NOT NULL,
    last_error    TEXT,
    last_error_at TIMESTAMPTZ,
    delivered     TIMESTAMPTZ,
    created       TIMESTAMPTZ NOT NULL,
    UNIQUE (automation_id, event_key, action_index)
);
CREATE INDEX automation_deliveries_due ON automation_deliveries (status, next_attempt);
CREATE INDEX automation_deliveries_by_automation ON automation_deliveries (automation_id, created DESC);
CREATE TABLE engine_cursors (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
)
