-- Named API keys (only a hash of each key) and the audit log of the calls
-- that changed something. A revoked key keeps its row, so a name always
-- means one key.
CREATE TABLE api_keys (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created INTEGER NOT NULL,
    revoked INTEGER
);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    key_name TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL
);
CREATE INDEX audit_log_by_key ON audit_log (key_name, id);
CREATE INDEX audit_log_at ON audit_log (at);
