CREATE TABLE variables (
    name    TEXT PRIMARY KEY,
    value   TEXT NOT NULL,
    tags    TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE TABLE artifacts (
    id          TEXT PRIMARY KEY,
    key         TEXT,
    kind        TEXT NOT NULL,
    data        TEXT NOT NULL,
    description TEXT,
    flow_run_id TEXT,
    task_run_id TEXT,
    created     INTEGER NOT NULL
);
CREATE INDEX artifacts_key ON artifacts (key, created DESC) WHERE key IS NOT NULL;
CREATE INDEX artifacts_flow_run ON artifacts (flow_run_id, created) WHERE flow_run_id IS NOT NULL;
CREATE INDEX artifacts_created ON artifacts (created DESC)
