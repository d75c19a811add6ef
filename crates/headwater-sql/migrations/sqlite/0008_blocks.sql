CREATE TABLE block_types (
    slug        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    schema      TEXT NOT NULL
);
CREATE TABLE blocks (
    name       TEXT PRIMARY KEY,
    block_type TEXT NOT NULL,
    data       TEXT NOT NULL,
    created    INTEGER NOT NULL,
    updated    INTEGER NOT NULL
)
