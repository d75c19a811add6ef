CREATE TABLE work_pools (
    name              TEXT PRIMARY KEY,
    kind              TEXT NOT NULL,
    paused            INTEGER NOT NULL,
    concurrency_limit INTEGER,
    created           INTEGER NOT NULL,
    updated           INTEGER NOT NULL
);
CREATE TABLE workers (
    work_pool      TEXT NOT NULL,
    name           TEXT NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    PRIMARY KEY (work_pool, name)
)
