ALTER TABLE flow_runs ADD COLUMN deployment_id TEXT;
ALTER TABLE flow_runs ADD COLUMN work_pool TEXT;
ALTER TABLE flow_runs ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX flow_runs_idempotency ON flow_runs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX flow_runs_due ON flow_runs (work_pool, state_type, state_scheduled) WHERE work_pool IS NOT NULL;
CREATE INDEX flow_runs_deployment ON flow_runs (deployment_id, created DESC) WHERE deployment_id IS NOT NULL
