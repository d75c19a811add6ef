CREATE TABLE deployments (
    id        UUID PRIMARY KEY,
    name      TEXT NOT NULL UNIQUE,
    flow_name TEXT NOT NULL,
    paused    BOOLEAN NOT NULL,
    spec      JSONB NOT NULL,
    created   TIMESTAMPTZ NOT NULL,
    updated   TIMESTAMPTZ NOT NULL
);
CREATE INDEX deployments_flow ON deployments (flow_name)
