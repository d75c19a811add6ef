CREATE TABLE deployments (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL UNIQUE,
    flow_name TEXT NOT NULL,
    paused    INTEGER NOT NULL,
    spec      TEXT NOT NULL,
    created   INTEGER NOT NULL,
    updated   INTEGER NOT NULL
);
CREATE INDEX deployments_flow ON deployments (flow_name)
