-- +goose Up
CREATE TABLE nodes (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid               TEXT NOT NULL UNIQUE,
    name               TEXT UNIQUE,
    driver             TEXT NOT NULL,
    driver_info        TEXT NOT NULL DEFAULT '{}',
    power_state        TEXT,
    target_power_state TEXT,
    provision_state    TEXT NOT NULL,
    maintenance        BOOLEAN NOT NULL DEFAULT FALSE,
    maintenance_reason TEXT,
    fault              TEXT,
    last_error         TEXT,
    instance_uuid      TEXT UNIQUE,
    disable_power_off  BOOLEAN NOT NULL DEFAULT FALSE,
    extra              TEXT NOT NULL DEFAULT '{}',
    sync_failures      INTEGER NOT NULL DEFAULT 0,
    version            INTEGER NOT NULL DEFAULT 1,
    created_at         TIMESTAMP NOT NULL,
    updated_at         TIMESTAMP NOT NULL
);
-- Keyset pagination orders by (key, id); the sync filters on these columns.
CREATE INDEX nodes_sync_failures_id ON nodes (sync_failures, id);
CREATE INDEX nodes_created_at_id ON nodes (created_at, id);
CREATE INDEX nodes_updated_at_id ON nodes (updated_at, id);
CREATE INDEX nodes_provision_state_id ON nodes (provision_state, id);
-- The sync pass: nodes not in maintenance, most failures first.
CREATE INDEX nodes_maintenance_sync ON nodes (maintenance, sync_failures, id);
CREATE INDEX nodes_fault ON nodes (fault);
CREATE INDEX nodes_driver ON nodes (driver);

-- +goose Down
DROP TABLE nodes;
