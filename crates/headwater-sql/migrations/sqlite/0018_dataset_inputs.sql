-- Lineage: the versions a version was made from, as a JSON list of
-- {dataset, partition, version}.
ALTER TABLE dataset_versions ADD COLUMN inputs TEXT NOT NULL DEFAULT '[]';
