CREATE TABLE flows (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    version          TEXT,
    description      TEXT,
    parameter_schema TEXT NOT NULL,
    created          INTEGER NOT NULL,
    updated          INTEGER NOT NULL
);

CREATE TABLE flow_runs (
    id                 TEXT PRIMARY KEY,
    flow_id            TEXT NOT NULL,
    flow_name          TEXT NOT NULL,
    name               TEXT NOT NULL,
    parameters         TEXT NOT NULL,
    tags               TEXT NOT NULL,
    state_type         TEXT NOT NULL,
    state_name         TEXT NOT NULL,
    state_message      TEXT,
    state_timestamp    INTEGER NOT NULL,
    state_scheduled    INTEGER,
    parent_flow_run_id TEXT,
    run_count          INTEGER NOT NULL,
    start_time         INTEGER,
    end_time           INTEGER,
    created            INTEGER NOT NULL
);
CREATE INDEX flow_runs_created ON flow_runs (created DESC, id DESC);
CREATE INDEX flow_runs_state ON flow_runs (state_type, created DESC);
CREATE INDEX flow_runs_flow ON flow_runs (flow_name, created DESC);
CREATE INDEX flow_runs_parent ON flow_runs (parent_flow_run_id) WHERE parent_flow_run_id IS NOT NULL;
CREATE INDEX flow_runs_name ON flow_runs (name);

CREATE TABLE task_runs (
    id               TEXT PRIMARY KEY,
    flow_run_id      TEXT NOT NULL,
    task_name        TEXT NOT NULL,
    name             TEXT NOT NULL,
    dynamic_key      INTEGER NOT NULL,
    tags             TEXT NOT NULL,
    state_type       TEXT NOT NULL,
    state_name       TEXT NOT NULL,
    state_message    TEXT,
    state_timestamp  INTEGER NOT NULL,
    state_scheduled  INTEGER,
    run_count        INTEGER NOT NULL,
    cache_key        TEXT,
    cache_expiration INTEGER,
    start_time       INTEGER,
    end_time         INTEGER,
    created          INTEGER NOT NULL
);
CREATE INDEX task_runs_flow_run ON task_runs (flow_run_id, created);

CREATE TABLE run_states (
    id         INTEGER PRIMARY KEY,
    run_id     TEXT NOT NULL,
    run_kind   TEXT NOT NULL,
    state_type TEXT NOT NULL,
    state_name TEXT NOT NULL,
    message    TEXT,
    timestamp  INTEGER NOT NULL,
    scheduled  INTEGER
);
CREATE INDEX run_states_run ON run_states (run_id, id);

CREATE TABLE logs (
    id          INTEGER PRIMARY KEY,
    flow_run_id TEXT NOT NULL,
    task_run_id TEXT,
    level       INTEGER NOT NULL,
    timestamp   INTEGER NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX logs_flow_run ON logs (flow_run_id, id);
