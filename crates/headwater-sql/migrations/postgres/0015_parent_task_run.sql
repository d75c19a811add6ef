-- A Prefect client's subflow is linked to the task run that stands for it
-- in its parent; the parent finds it by that task run.
ALTER TABLE flow_runs ADD COLUMN parent_task_run_id UUID;
CREATE INDEX flow_runs_parent_task ON flow_runs (parent_task_run_id) WHERE parent_task_run_id IS NOT NULL;
