CREATE TABLE flows (
    id               UUID PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    version          TEXT,
    description      TEXT,
    parameter_schema JSONB NOT NULL,
    created          TIMESTAMPTZ NOT NULL,
    updated          TIMESTAMPTZ NOT NULL
);

CREATE TABLE flow_runs (
    id                 UUID PRIMARY KEY,
    flow_id            UUID NOT NULL,
    flow_name          TEXT NOT NULL,
    name               TEXT NOT NULL,
    parameters         JSONB NOT NULL,
    tags               JSONB NOT NULL,
    state_type         TEXT NOT NULL,
    state_name         TEXT NOT NULL,
    state_message      TEXT,
    state_timestamp    TIMESTAMPTZ NOT NULL,
    state_scheduled    TIMESTAMPTZ,
    parent_flow_run_id UUID,
    run_count          INTEGER NOT NULL,
    start_time         TIMESTAMPTZ,
    end_time           TIMESTAMPTZ,
    created            TIMESTAMPTZ NOT NULL
);
CREATE INDEX flow_runs_created ON flow_runs (created DESC, id DESC);
CREATE INDEX flow_runs_state ON flow_runs (state_type, created DESC);
CREATE INDEX flow_runs_flow ON flow_runs (flow_name, created DESC);
CREATE INDEX flow_runs_parent ON flow_runs (parent_flow_run_id) WHERE parent_flow_run_id IS NOT NULL;
CREATE INDEX flow_runs_name ON flow_runs (name);

CREATE TABLE task_runs (
    id               UUID PRIMARY KEY,
    flow_run_id      UUID NOT NULL,
    task_name        TEXT NOT NULL,
    name             TEXT NOT NULL,
    dynamic_key      BIGINT NOT NULL,
    tags             JSONB NOT NULL,
    state_type       TEXT NOT NULL,
    state_name       TEXT NOT NULL,
    state_message    TEXT,
    state_timestamp  TIMESTAMPTZ NOT NULL,
    state_scheduled  TIMESTAMPTZ,
    run_count        INTEGER NOT NULL,
    cache_key        TEXT,
    cache_expiration TIMESTAMPTZ,
    start_time       TIMESTAMPTZ,
    end_time         TIMESTAMPTZ,
    created          TIMESTAMPTZ NOT NULL
);
CREATE INDEX task_runs_flow_run ON task_runs (flow_run_id, created);

CREATE TABLE run_states (
    id         BIGSERIAL PRIMARY KEY,
    run_id     UUID NOT NULL,
    run_kind   TEXT NOT NULL,
    state_type TEXT NOT NULL,
    state_name TEXT NOT NULL,
    message    TEXT,
    timestamp  TIMESTAMPTZ NOT NULL,
    scheduled  TIMESTAMPTZ
);
CREATE INDEX run_states_run ON run_states (run_id, id);

CREATE TABLE logs (
    id          BIGSERIAL PRIMARY KEY,
    flow_run_id UUID NOT NULL,
    task_run_id UUID,
    level       INTEGER NOT NULL,
    timestamp   TIMESTAMPTZ NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX logs_flow_run ON logs (flow_run_id, id);
