CREATE TABLE datasets (
    name    TEXT PRIMARY KEY,
    schema  JSONB NOT NULL,
    created TIMESTAMPTZ NOT NULL,
    updated TIMESTAMPTZ NOT NULL
);
CREATE TABLE dataset_versions (
    dataset     TEXT NOT NULL,
    partition   TEXT NOT NULL,
    version     INTEGER NOT NULL,
    location    TEXT NOT NULL,
    rows        BIGINT NOT NULL,
    bytes       BIGINT NOT NULL,
    schema      JSONB NOT NULL,
    flow_run_id UUID,
    written     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (dataset, partition, version)
)
