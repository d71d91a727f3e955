-- +goose Up
-- A listing reads each node's UUID and version first (ListVersions):
-- an index-only scan serves it without reading the rows' JSON columns.
CREATE INDEX nodes_list_versions ON nodes (id) INCLUDE (uuid, version);

-- +goose Down
DROP INDEX nodes_list_versions;
