CREATE TABLE variables (
    name    TEXT PRIMARY KEY,
    value   JSONB NOT NULL,
    tags    JSONB NOT NULL,
    created TIMESTAMPTZ NOT NULL,
    updated TIMESTAMPTZ NOT NULL
);
CREATE TABLE artifacts (
    id          UUID PRIMARY KEY,
    key         TEXT,
    kind        TEXT NOT NULL,
    data        JSONB NOT NULL,
    description TEXT,
    flow_run_id UUID,
    task_run_id UUID,
    created     TIMESTAMPTZ NOT NULL
);
CREATE INDEX artifacts_key ON artifacts (key, created DESC) WHERE key IS NOT NULL;
CREATE INDEX artifacts_flow_run ON artifacts (flow_run_id, created) WHERE flow_run_id IS NOT NULL;
CREATE INDEX artifacts_created ON artifacts (created DESC)
