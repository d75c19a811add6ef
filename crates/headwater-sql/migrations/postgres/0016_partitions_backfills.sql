-- A deployment's runs know the partition they are for and the backfill
-- that made them; a partition's latest run is found by (deployment, partition).
ALTER TABLE flow_runs ADD COLUMN partition_key TEXT;
ALTER TABLE flow_runs ADD COLUMN backfill_id UUID;
CREATE INDEX flow_runs_partition ON flow_runs (deployment_id, partition_key, created) WHERE partition_key IS NOT NULL;
CREATE INDEX flow_runs_backfill ON flow_runs (backfill_id, state_type) WHERE backfill_id IS NOT NULL;
CREATE TABLE backfills (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    deployment TEXT NOT NULL,
    spec       JSONB NOT NULL,
    created    TIMESTAMPTZ NOT NULL,
    updated    TIMESTAMPTZ NOT NULL,
    cancelled  TIMESTAMPTZ
);
CREATE INDEX backfills_deployment ON backfills (deployment, created);
