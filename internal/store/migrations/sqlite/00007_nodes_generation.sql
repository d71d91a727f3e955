-- +goose Up
-- The API keeps whole listing pages while no node is written. Every write
-- to nodes, by any process or by hand, raises the generation in its own
-- transaction, so an unchanged generation means nothing was committed.
CREATE TABLE nodes_generation (slot INTEGER PRIMARY KEY, gen INTEGER NOT NULL);
INSERT INTO nodes_generation (slot, gen) VALUES (0, 0);
-- +goose StatementBegin
CREATE TRIGGER nodes_generation_insert AFTER INSERT ON nodes BEGIN
    UPDATE nodes_generation SET gen = gen + 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER nodes_generation_update AFTER UPDATE ON nodes BEGIN
    UPDATE nodes_generation SET gen = gen + 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER nodes_generation_delete AFTER DELETE ON nodes BEGIN
    UPDATE nodes_generation SET gen = gen + 1;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER nodes_generation_delete;
DROP TRIGGER nodes_generation_update;
DROP TRIGGER nodes_generation_insert;
DROP TABLE nodes_generation;
