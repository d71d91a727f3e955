-- +goose Up
-- Node history, as Ironic's: what happened to a node, for operators.
CREATE TABLE node_history (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid       TEXT NOT NULL UNIQUE,
    node_uuid  TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    severity   TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event      TEXT NOT NULL,
    source     TEXT
);
CREATE INDEX node_history_node ON node_history (node_uuid, id);

-- +goose Down
DROP TABLE node_history;
