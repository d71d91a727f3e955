-- +goose Up
-- Ironic's owner (API 1.50) and lessee (1.65): Keystone project IDs that
-- the access policy matches callers against; NULL when unset.
ALTER TABLE nodes ADD COLUMN owner TEXT;
ALTER TABLE nodes ADD COLUMN lessee TEXT;
CREATE INDEX nodes_owner ON nodes (owner);
CREATE INDEX nodes_lessee ON nodes (lessee);

-- +goose Down
DROP INDEX nodes_lessee;
DROP INDEX nodes_owner;
ALTER TABLE nodes DROP COLUMN lessee;
ALTER TABLE nodes DROP COLUMN owner;
