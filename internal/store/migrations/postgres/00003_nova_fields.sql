-- +goose Up
-- What Nova's ironic driver reads (Ironic's node fields of the same names):
-- the resource class its resource tracker reports, the node's properties
-- (cpu_arch, ...) and its traits.
ALTER TABLE nodes ADD COLUMN resource_class TEXT;
ALTER TABLE nodes ADD COLUMN properties JSONB NOT NULL DEFAULT '{}';
ALTER TABLE nodes ADD COLUMN traits JSONB NOT NULL DEFAULT '[]';
CREATE INDEX nodes_resource_class_id ON nodes (resource_class, id);

-- +goose Down
DROP INDEX nodes_resource_class_id;
ALTER TABLE nodes DROP COLUMN traits;
ALTER TABLE nodes DROP COLUMN properties;
ALTER TABLE nodes DROP COLUMN resource_class;
