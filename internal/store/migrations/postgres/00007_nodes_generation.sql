-- +goose Up
-- The API keeps whole listing pages while no node is written. Every write
-- to nodes, by any process or by hand, raises the generation in its own
-- transaction, so an unchanged sum means nothing was committed. Writers
-- raise one of 16 slots, picked by transaction, so concurrent writers do
-- not queue on one row lock until they commit.
CREATE TABLE nodes_generation (slot INTEGER PRIMARY KEY, gen BIGINT NOT NULL);
INSERT INTO nodes_generation (slot, gen) SELECT s, 0 FROM generate_series(0, 15) AS s;
-- +goose StatementBegin
CREATE FUNCTION nodes_generation_raise() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE nodes_generation SET gen = gen + 1 WHERE slot = txid_current() % 16;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER nodes_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON nodes
    FOR EACH STATEMENT EXECUTE FUNCTION nodes_generation_raise();

-- +goose Down
DROP TRIGGER nodes_generation ON nodes;
DROP FUNCTION nodes_generation_raise();
DROP TABLE nodes_generation;
