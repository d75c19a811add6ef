-- The name index found a run's entry by scanning it (`run_id` is not
-- indexed in FTS5), which made each deleted run (retention) read every
-- entry. Each entry's rowid now comes from a numbering table keyed by run
-- id: INTEGER PRIMARY KEY values survive VACUUM, unlike flow_runs' own
-- rowids, so a run's entry is found and deleted by rowid.
DROP TRIGGER flow_run_names_insert;
DROP TRIGGER flow_run_names_rename;
DROP TRIGGER flow_run_names_delete;
DROP TABLE flow_run_names;
CREATE TABLE flow_run_name_rows (n INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE);
CREATE VIRTUAL TABLE flow_run_names USING fts5(name, run_id UNINDEXED, tokenize = 'trigram');
INSERT INTO flow_run_name_rows (run_id) SELECT id FROM flow_runs;
INSERT INTO flow_run_names (rowid, name, run_id)
    SELECT m.n, r.name, r.id FROM flow_runs r JOIN flow_run_name_rows m ON m.run_id = r.id;
CREATE TRIGGER flow_run_names_insert AFTER INSERT ON flow_runs BEGIN
    INSERT INTO flow_run_name_rows (run_id) VALUES (new.id);
    INSERT INTO flow_run_names (rowid, name, run_id) VALUES (last_insert_rowid(), new.name, new.id);
END;
CREATE TRIGGER flow_run_names_rename AFTER UPDATE OF name ON flow_runs WHEN old.name <> new.name BEGIN
    DELETE FROM flow_run_names WHERE rowid = (SELECT n FROM flow_run_name_rows WHERE run_id = old.id);
    INSERT INTO flow_run_names (rowid, name, run_id)
        VALUES ((SELECT n FROM flow_run_name_rows WHERE run_id = new.id), new.name, new.id);
END;
CREATE TRIGGER flow_run_names_delete AFTER DELETE ON flow_runs BEGIN
    DELETE FROM flow_run_names WHERE rowid = (SELECT n FROM flow_run_name_rows WHERE run_id = old.id);
    DELETE FROM flow_run_name_rows WHERE run_id = old.id;
END;
