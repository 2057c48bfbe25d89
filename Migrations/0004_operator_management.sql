-- Operator management: registering charge points (description, Basic-auth password for OCPP
-- security profile 1), and the audit trail of every command sent to a charger, which is also
-- where asynchronous commands keep their state.

ALTER TABLE charge_points
    ADD COLUMN description   text,
    -- "<salt hex>:<HMAC-SHA256(salt, password) hex>"; never the password.
    ADD COLUMN password_hash text,
    -- Set by an operator (PUT /api/v1/charge-points/{id}); a charger that merely connected is not registered.
    ADD COLUMN registered    boolean NOT NULL DEFAULT false,
    ADD COLUMN updated_at    timestamptz;

CREATE TABLE charger_calls (
    id              text PRIMARY KEY,
    charge_point_id text NOT NULL,
    action          text NOT NULL,
    payload         jsonb NOT NULL,
    mode            text NOT NULL CHECK (mode IN ('sync', 'async')),
    requested_by    text NOT NULL,
    state           text NOT NULL CHECK (state IN ('RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT')),
    response        jsonb,
    error           jsonb,
    node_id         text,
    created_at      timestamptz NOT NULL,
    finished_at     timestamptz
);
CREATE INDEX charger_calls_charge_point_idx ON charger_calls (charge_point_id, created_at DESC);
CREATE INDEX charger_calls_running_idx ON charger_calls (created_at) WHERE state = 'RUNNING';
