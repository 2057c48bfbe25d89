-- Workflows that charger messages start, written in the same transaction as the message's data
-- (a StartTransaction starts a ChargingSession, an Accepted boot a Provisioning), so a crash between
-- the answer and the start loses nothing. Workers claim rows with FOR UPDATE SKIP LOCKED.
CREATE TABLE workflow_starts (
    id           bigserial PRIMARY KEY,
    execution_id text NOT NULL UNIQUE,
    workflow     text NOT NULL,
    input        jsonb NOT NULL,
    created_at   timestamptz NOT NULL
);

-- Limits a session of this tag gets: {"maxEnergyWh": n, "maxDurationSeconds": n, "maxIdleSeconds": n}.
ALTER TABLE id_tags ADD COLUMN session_limits jsonb;

-- Configuration pushed to chargers after an Accepted boot: scope '*' is every charger; a charger's
-- own value for a key wins over '*'.
CREATE TABLE charger_configuration (
    scope      text NOT NULL,
    key        text NOT NULL CHECK (length(key) BETWEEN 1 AND 50),
    value      text NOT NULL CHECK (length(value) <= 500),
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
