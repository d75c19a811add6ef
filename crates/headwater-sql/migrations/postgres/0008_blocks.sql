CREATE TABLE block_types (
    slug        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    schema      JSONB NOT NULL
);
CREATE TABLE blocks (
    name       TEXT PRIMARY KEY,
    block_type TEXT NOT NULL,
    data       JSONB NOT NULL,
    created    TIMESTAMPTZ NOT NULL,
    updated    TIMESTAMPTZ NOT NULL
)
