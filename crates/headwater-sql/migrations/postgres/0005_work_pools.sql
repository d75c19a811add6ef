CREATE TABLE work_pools (
    name              TEXT PRIMARY KEY,
    kind              TEXT NOT NULL,
    paused            BOOLEAN NOT NULL,
    concurrency_limit INTEGER,
    created           TIMESTAMPTZ NOT NULL,
    updated           TIMESTAMPTZ NOT NULL
);
CREATE TABLE workers (
    work_pool      TEXT NOT NULL,
    name           TEXT NOT NULL,
    last_heartbeat TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (work_pool, name)
)
