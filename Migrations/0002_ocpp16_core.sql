-- OCPP 1.6 central-system state: charge points, connector status, the authorization list,
-- transactions and their meter values, and every other message a charger sends.

-- One row per charge point ever seen. registration_status is the operator's decision that
-- BootNotification answers with (Accepted by default).
CREATE TABLE charge_points (
    charge_point_id          text PRIMARY KEY,
    registration_status      text NOT NULL DEFAULT 'Accepted'
                             CHECK (registration_status IN ('Accepted', 'Pending', 'Rejected')),
    vendor                   text,
    model                    text,
    serial_number            text,
    charge_box_serial_number text,
    firmware_version         text,
    iccid                    text,
    imsi                     text,
    meter_type               text,
    meter_serial_number      text,
    last_boot_at             timestamptz,
    last_seen_at             timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now()
);

-- The current status per connector (connector 0 is the charge point itself).
CREATE TABLE connector_status (
    charge_point_id   text NOT NULL REFERENCES charge_points (charge_point_id) ON DELETE CASCADE,
    connector_id      integer NOT NULL,
    status            text NOT NULL,
    error_code        text NOT NULL,
    info              text,
    vendor_id         text,
    vendor_error_code text,
    status_at         timestamptz,
    received_at       timestamptz NOT NULL,
    PRIMARY KEY (charge_point_id, connector_id)
);

-- Every StatusNotification, in arrival order.
CREATE TABLE status_history (
    id                bigserial PRIMARY KEY,
    charge_point_id   text NOT NULL,
    connector_id      integer NOT NULL,
    status            text NOT NULL,
    error_code        text NOT NULL,
    info              text,
    vendor_id         text,
    vendor_error_code text,
    status_at         timestamptz,
    received_at       timestamptz NOT NULL
);
CREATE INDEX status_history_charge_point_idx ON status_history (charge_point_id, connector_id, id);

-- The authorization list that Authorize and StartTransaction consult.
CREATE TABLE id_tags (
    id_tag        text PRIMARY KEY CHECK (length(id_tag) BETWEEN 1 AND 20),
    status        text NOT NULL CHECK (status IN ('Accepted', 'Blocked', 'Expired', 'Invalid', 'ConcurrentTx')),
    expiry_date   timestamptz,
    parent_id_tag text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Transactions; the id is what the charger gets (a positive 32-bit integer, as OCPP's schema says).
-- The unique key makes a retried StartTransaction return the same transaction.
CREATE TABLE transactions (
    transaction_id    serial PRIMARY KEY,
    charge_point_id   text NOT NULL,
    connector_id      integer NOT NULL,
    id_tag            text NOT NULL,
    id_tag_status     text NOT NULL,
    meter_start       integer NOT NULL,
    started_at        timestamptz NOT NULL,
    reservation_id    integer,
    meter_stop        integer,
    stopped_at        timestamptz,
    stop_reason       text,
    stop_id_tag       text,
    received_start_at timestamptz NOT NULL,
    received_stop_at  timestamptz,
    CONSTRAINT transactions_start_key UNIQUE (charge_point_id, connector_id, id_tag, meter_start, started_at)
);
CREATE INDEX transactions_charge_point_idx ON transactions (charge_point_id, started_at DESC);
CREATE INDEX transactions_started_at_idx ON transactions (started_at DESC);
CREATE INDEX transactions_id_tag_idx ON transactions (id_tag, started_at DESC);

-- Every sampled value, from MeterValues and from StopTransaction's transactionData. Values for a
-- transaction we do not know are kept (transaction_id has no foreign key on purpose).
CREATE TABLE meter_values (
    id              bigserial PRIMARY KEY,
    charge_point_id text NOT NULL,
    connector_id    integer NOT NULL,
    transaction_id  integer,
    sampled_at      timestamptz NOT NULL,
    value           text NOT NULL,
    context         text,
    format          text,
    measurand       text,
    phase           text,
    location        text,
    unit            text,
    source          text NOT NULL CHECK (source IN ('MeterValues', 'StopTransaction')),
    received_at     timestamptz NOT NULL
);
-- A charger that resends a MeterValues it got no answer for must not double a value.
CREATE UNIQUE INDEX meter_values_sample_key ON meter_values (
    charge_point_id, connector_id, coalesce(transaction_id, -1), sampled_at,
    coalesce(measurand, ''), coalesce(phase, ''), coalesce(location, ''), coalesce(context, ''), source
);
CREATE INDEX meter_values_transaction_idx ON meter_values (transaction_id, sampled_at) WHERE transaction_id IS NOT NULL;
CREATE INDEX meter_values_charge_point_idx ON meter_values (charge_point_id, sampled_at DESC);

-- DataTransfer and the notifications (diagnostics, firmware, security events, logs, certificates).
CREATE TABLE charger_messages (
    id              bigserial PRIMARY KEY,
    charge_point_id text NOT NULL,
    action          text NOT NULL,
    payload         jsonb NOT NULL,
    received_at     timestamptz NOT NULL
);
CREATE INDEX charger_messages_charge_point_idx ON charger_messages (charge_point_id, action, id);

-- What a charger did that made no sense (a StopTransaction for an unknown transaction, ...):
-- answered anyway, so the charger does not retry forever, and kept here for the operator.
CREATE TABLE anomalies (
    id              bigserial PRIMARY KEY,
    charge_point_id text NOT NULL,
    kind            text NOT NULL,
    detail          jsonb NOT NULL,
    occurred_at     timestamptz NOT NULL
);
CREATE INDEX anomalies_charge_point_idx ON anomalies (charge_point_id, id);
