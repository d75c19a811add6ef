-- Where a version came from on the web (URL, ETag, Last-Modified, size),
-- and the latest look at that file since: a changed source makes the
-- partition stale.
ALTER TABLE dataset_versions ADD COLUMN source JSONB;
ALTER TABLE dataset_versions ADD COLUMN source_check JSONB;
-- A dataset's freshness policy (its time partitions and how soon each
-- must be written), from `datasets:` in headwater.yaml.
ALTER TABLE datasets ADD COLUMN policy JSONB;
