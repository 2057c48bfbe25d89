-- One row per meter reading (a MeterValues meterValue element, or one in StopTransaction's
-- transactionData: a timestamp and its sampled values) instead of one row per sampled value.
-- A charger in a session sends a reading with several values (energy, power, current, voltage,
-- SoC, per phase...) every interval; one row per value cost PostgreSQL an insert into a table and
-- four indexes (one of them a nine-column unique expression index) for each of them, the most
-- expensive thing a charging fleet asked of it. One row per reading stores the same values with a
-- fifth of the rows and index entries, in less than half the space (BENCHMARKS.md).
CREATE TABLE meter_readings (
    id              bigserial PRIMARY KEY,
    charge_point_id text NOT NULL,
    connector_id    integer NOT NULL,
    transaction_id  integer,
    sampled_at      timestamptz NOT NULL,
    -- The sampledValue array: objects with "value" and whichever of "context", "format",
    -- "measurand", "phase", "location", "unit" the charger sent.
    samples         jsonb NOT NULL CHECK (jsonb_typeof(samples) = 'array'),
    source          text NOT NULL CHECK (source IN ('MeterValues', 'StopTransaction')),
    received_at     timestamptz NOT NULL
);
-- A charger that resends a MeterValues it got no answer for must not double a reading: the same
-- reading (same values, whatever the key order) is stored once.
CREATE UNIQUE INDEX meter_readings_key ON meter_readings (
    charge_point_id, connector_id, coalesce(transaction_id, -1), sampled_at, source, md5(samples::text)
);
CREATE INDEX meter_readings_transaction_idx ON meter_readings (transaction_id, sampled_at) WHERE transaction_id IS NOT NULL;
CREATE INDEX meter_readings_charge_point_idx ON meter_readings (charge_point_id, sampled_at DESC);

-- The values stored so far, one reading per (charger, connector, transaction, time, source,
-- arrival), in the order they were stored.
INSERT INTO meter_readings (charge_point_id, connector_id, transaction_id, sampled_at, samples, source, received_at)
SELECT charge_point_id, connector_id, transaction_id, sampled_at,
    jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
        'value', value, 'context', context, 'format', format, 'measurand', measurand,
        'phase', phase, 'location', location, 'unit', unit)) ORDER BY id),
    source, received_at
FROM meter_values
GROUP BY charge_point_id, connector_id, transaction_id, sampled_at, source, received_at
ORDER BY min(id)
ON CONFLICT DO NOTHING;

DROP TABLE meter_values;

-- One row per sampled value, as before, for reading (history, reports, psql): the readings'
-- samples unnested. Conditions on the reading's columns (transaction_id, charge_point_id,
-- sampled_at) use the indexes above. reading_id and sample_index give the order of arrival.
CREATE VIEW meter_values AS
SELECT r.id AS reading_id, s.n::integer AS sample_index, r.charge_point_id, r.connector_id, r.transaction_id, r.sampled_at,
    s.v ->> 'value' AS value, s.v ->> 'context' AS context, s.v ->> 'format' AS format, s.v ->> 'measurand' AS measurand,
    s.v ->> 'phase' AS phase, s.v ->> 'location' AS location, s.v ->> 'unit' AS unit, r.source, r.received_at
FROM meter_readings r
CROSS JOIN LATERAL jsonb_array_elements(r.samples) WITH ORDINALITY AS s(v, n);
