CREATE TABLE concurrency_limits (
    name                  TEXT PRIMARY KEY,
    slot_limit            INTEGER NOT NULL,
    slot_decay_per_second DOUBLE PRECISION,
    created               TIMESTAMPTZ NOT NULL,
    updated               TIMESTAMPTZ NOT NULL
);
CREATE TABLE concurrency_leases (
    id      UUID NOT NULL,
    name    TEXT NOT NULL REFERENCES concurrency_limits (name) ON DELETE CASCADE,
    slots   INTEGER NOT NULL,
    holder  TEXT NOT NULL,
    expires TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (id, name)
);
CREATE INDEX concurrency_leases_by_name ON concurrency_leases (name, expires)
