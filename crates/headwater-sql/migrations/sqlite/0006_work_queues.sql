ALTER TABLE flow_runs ADD COLUMN work_queue TEXT;
ALTER TABLE flow_runs ADD COLUMN retry_policy TEXT;
UPDATE flow_runs SET work_queue = 'default' WHERE work_pool IS NOT NULL AND work_queue IS NULL;
CREATE INDEX flow_runs_queue_due ON flow_runs (work_pool, work_queue, state_type, state_scheduled) WHERE work_pool IS NOT NULL;
CREATE TABLE work_queues (
    work_pool         TEXT NOT NULL,
    name              TEXT NOT NULL,
    priority          INTEGER NOT NULL,
    concurrency_limit INTEGER,
    paused            INTEGER NOT NULL,
    created           INTEGER NOT NULL,
    updated           INTEGER NOT NULL,
    PRIMARY KEY (work_pool, name)
);
INSERT INTO work_queues (work_pool, name, priority, concurrency_limit, paused, created, updated)
    SELECT name, 'default', 1, NULL, 0, created, updated FROM work_pools
