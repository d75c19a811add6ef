CREATE TABLE datasets (
    name    TEXT PRIMARY KEY,
    schema  TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE TABLE dataset_versions (
    dataset     TEXT NOT NULL,
    partition   TEXT NOT NULL,
    version     INTEGER NOT NULL,
    location    TEXT NOT NULL,
    rows        INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    schema      TEXT NOT NULL,
    flow_run_id TEXT,
    written     INTEGER NOT NULL,
    PRIMARY KEY (dataset, partition, version)
)
