-- The dashboard counts runs by creation time and state, and the runs page
-- filters by state name (Late) newest first.
CREATE INDEX flow_runs_created_state ON flow_runs (created, state_type);
CREATE INDEX flow_runs_state_name ON flow_runs (state_name, created DESC, id DESC);
