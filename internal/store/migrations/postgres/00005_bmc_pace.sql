-- +goose Up
-- The IPMI command spacing ([ipmi] min_command_interval) shared by every
-- process that talks to BMCs: one row per BMC (address:port), who holds
-- it until when, and when its last command ended (Unix nanoseconds).
CREATE TABLE bmc_pace (
    bmc        TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    busy_until BIGINT NOT NULL,
    last_end   BIGINT NOT NULL
);

-- +goose Down
DROP TABLE bmc_pace;
