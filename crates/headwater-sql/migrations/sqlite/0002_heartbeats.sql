ALTER TABLE flow_runs ADD COLUMN heartbeat INTEGER;
CREATE INDEX flow_runs_live_heartbeat ON flow_runs (state_type, heartbeat) WHERE heartbeat IS NOT NULL;
