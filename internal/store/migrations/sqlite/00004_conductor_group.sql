-- +goose Up
-- Ironic's conductor_group: the BMC network segment a node's BMC sits in
-- ("" for the default group; stored in lower case).
ALTER TABLE nodes ADD COLUMN conductor_group TEXT NOT NULL DEFAULT '';
CREATE INDEX nodes_conductor_group_id ON nodes (conductor_group, id);

-- +goose Down
DROP INDEX nodes_conductor_group_id;
ALTER TABLE nodes DROP COLUMN conductor_group;
