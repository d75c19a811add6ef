-- Searching runs by a part of their name: a trigram index answers LIKE
-- '%part%' (any case) without reading every run. It keeps the run's id (not
-- its rowid, which VACUUM may renumber).
CREATE VIRTUAL TABLE flow_run_names USING fts5(name, run_id UNINDEXED, tokenize = 'trigram');
INSERT INTO flow_run_names (name, run_id) SELECT name, id FROM flow_runs;
CREATE TRIGGER flow_run_names_insert AFTER INSERT ON flow_runs BEGIN
    INSERT INTO flow_run_names (name, run_id) VALUES (new.name, new.id);
END;
-- Names do not change and runs are not deleted today; these keep the index
-- right if that changes (at the cost of a scan of the index).
CREATE TRIGGER flow_run_names_rename AFTER UPDATE OF name ON flow_runs WHEN old.name <> new.name BEGIN
    DELETE FROM flow_run_names WHERE run_id = old.id;
    INSERT INTO flow_run_names (name, run_id) VALUES (new.name, new.id);
END;
CREATE TRIGGER flow_run_names_delete AFTER DELETE ON flow_runs BEGIN
    DELETE FROM flow_run_names WHERE run_id = old.id;
END;
