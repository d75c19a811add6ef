-- "What did this run write?" (a partition's cell in the grid, a run's
-- page) looks versions up by the run that wrote them.
CREATE INDEX dataset_versions_writer ON dataset_versions (flow_run_id) WHERE flow_run_id IS NOT NULL;
