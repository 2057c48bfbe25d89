#!/usr/bin/env bash
# Test-only: loads 100,000 transactions and 1,000,000 meter values into a throwaway PostgreSQL
# cluster (or into the empty database $DATABASE_URL points at) and prints the plan and timing of
# each history query shape, to check that every filter combination walks an index and stops
# after one page. Not run by CI. Usage: Scripts/history-explain.sh [> plans.txt]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

if [[ -z "${DATABASE_URL:-}" ]]; then
    bin="$(dirname "$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)")"
    dir="$(mktemp -d /tmp/history-explain.XXXXXX)"
    as=()
    if [[ "$(id -u)" == 0 ]]; then chown postgres "$dir"; as=(runuser -u postgres --); fi
    "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust >/dev/null
    port=$((20000 + RANDOM % 20000))
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -o "-p $port -k $dir -c listen_addresses=''" -l "$dir/log" -w start >/dev/null
    trap '"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null; rm -rf "$dir"' EXIT
    DATABASE_URL="postgresql://postgres@/postgres?host=$dir&port=$port"
fi
psql=(psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1)

for migration in "$root"/Migrations/*.sql; do "${psql[@]}" -f "$migration"; done

"${psql[@]}" <<'SQL'
INSERT INTO charge_points (charge_point_id, vendor, model, last_boot_at, last_seen_at)
SELECT 'CP-' || lpad(n::text, 4, '0'), 'Acme', 'Fast-1', now(), now() FROM generate_series(1, 1000) AS n;
INSERT INTO connector_status (charge_point_id, connector_id, status, error_code, status_at, received_at)
SELECT charge_point_id, c, 'Available', 'NoError', now(), now() FROM charge_points, generate_series(0, 2) AS c;
-- 100,000 transactions over a year, 100 per charge point; the newest 200 still active.
INSERT INTO transactions (charge_point_id, connector_id, id_tag, id_tag_status, meter_start, started_at, meter_stop,
    stopped_at, stop_reason, received_start_at, received_stop_at)
SELECT 'CP-' || lpad((n % 1000 + 1)::text, 4, '0'), n % 2 + 1, 'TAG-' || (n % 5000), 'Accepted', n,
    timestamptz '2026-01-01' + n * interval '5 minutes',
    CASE WHEN n <= 99800 THEN n + 20000 END, CASE WHEN n <= 99800 THEN timestamptz '2026-01-01' + n * interval '5 minutes' + interval '1 hour' END,
    CASE WHEN n <= 99800 THEN 'EVDisconnected' END, now(), NULL
FROM generate_series(1, 100000) AS n;
-- 10 readings (migration 0009) of one sample each per transaction: 1,000,000 meter values.
INSERT INTO meter_readings (charge_point_id, connector_id, transaction_id, sampled_at, samples, source, received_at, samples_hash)
SELECT t.charge_point_id, t.connector_id, t.transaction_id, t.started_at + s * interval '6 minutes',
    r.samples, 'MeterValues', now(), meter_samples_hash(r.samples)
FROM transactions t, generate_series(0, 9) AS s,
LATERAL (SELECT jsonb_build_array(jsonb_build_object('value', (t.meter_start + s * 2000)::text,
        'measurand', CASE WHEN s % 2 = 0 THEN 'Energy.Active.Import.Register' ELSE 'Power.Active.Import' END,
        'unit', CASE WHEN s % 2 = 0 THEN 'Wh' ELSE 'W' END)) AS samples) r;
INSERT INTO status_history (charge_point_id, connector_id, status, error_code, status_at, received_at)
SELECT 'CP-' || lpad((n % 1000 + 1)::text, 4, '0'), n % 3, 'Charging', 'NoError', timestamptz '2026-01-01' + n * interval '5 minutes', now()
FROM generate_series(1, 100000) AS n;
INSERT INTO anomalies (charge_point_id, kind, detail, occurred_at)
SELECT 'CP-0001', 'StopTransactionAlreadyStopped', jsonb_build_object('transactionId', (n * 97)::text), now() FROM generate_series(1, 1000) AS n;
ANALYZE;
SQL

select="SELECT t.transaction_id, t.charge_point_id, t.connector_id, t.id_tag, t.id_tag_status, t.started_at,
    (extract(epoch FROM t.started_at) * 1000000)::int8, t.stopped_at, t.meter_start, t.meter_stop, t.stop_reason, r.value, r.unit,
    ARRAY(SELECT a.kind FROM anomalies a WHERE a.detail ->> 'transactionId' = t.transaction_id::text ORDER BY a.id)
FROM transactions t
LEFT JOIN LATERAL (
    SELECT m.value, m.unit FROM meter_values m
    WHERE t.meter_stop IS NULL AND m.transaction_id = t.transaction_id
        AND coalesce(m.measurand, 'Energy.Active.Import.Register') = 'Energy.Active.Import.Register'
        AND m.value ~ '^ *[0-9]+([.][0-9]+)? *\$'
    ORDER BY m.sampled_at DESC, (m.phase IS NULL) DESC, m.reading_id DESC, m.sample_index DESC LIMIT 1
) r ON true WHERE true"
order="ORDER BY t.started_at DESC, t.transaction_id DESC LIMIT 51"
cursor="AND (t.started_at, t.transaction_id) < (timestamptz 'epoch' + 1780000000000000 * interval '1 microsecond', 50000)"

explain() {
    echo "=== $1"
    "${psql[@]}" -c "EXPLAIN (ANALYZE, COSTS OFF, SUMMARY ON) $2" | grep -vE '^ *(QUERY PLAN|-+)$'
}
explain "no filter" "$select $order"
explain "no filter, deep cursor" "$select $cursor $order"
explain "status=active" "$select AND t.meter_stop IS NULL $order"
explain "status=completed + cursor" "$select AND t.meter_stop IS NOT NULL $cursor $order"
explain "chargePointId" "$select AND t.charge_point_id = 'CP-0042' $order"
explain "chargePointId + connectorId + cursor" "$select AND t.charge_point_id = 'CP-0042' AND t.connector_id = 1 $cursor $order"
explain "chargePointId + status=active" "$select AND t.charge_point_id = 'CP-0042' AND t.meter_stop IS NULL $order"
explain "connectorId alone (rare value)" "$select AND t.connector_id = 7 $order"
explain "idTag" "$select AND t.id_tag = 'TAG-17' $order"
explain "idTag (unknown)" "$select AND t.id_tag = ''' OR ''1''=''1' $order"
explain "from/to" "$select AND t.started_at >= '2026-03-01' AND t.started_at < '2026-03-02' $order"
explain "chargePointId + from/to" "$select AND t.charge_point_id = 'CP-0042' AND t.started_at >= '2026-03-01' AND t.started_at < '2026-06-01' $order"
explain "one transaction" "$select AND t.transaction_id = 99950"
explain "meter values of one transaction" "SELECT sampled_at, value, measurand, unit, phase, location, context, format, source FROM meter_values WHERE transaction_id = 50000 ORDER BY sampled_at, reading_id, sample_index"
explain "meter values by measurand" "SELECT sampled_at, value, measurand, unit, phase, location, context, format, source FROM meter_values WHERE transaction_id = 50000 AND coalesce(measurand, 'Energy.Active.Import.Register') = 'Power.Active.Import' ORDER BY sampled_at, reading_id, sample_index"
explain "charge points page" "SELECT cp.charge_point_id, c.connection_id FROM charge_points cp LEFT JOIN connections c ON c.charge_point_id = cp.charge_point_id WHERE true AND cp.charge_point_id > 'CP-0500' ORDER BY cp.charge_point_id LIMIT 51"
explain "status history + from/to + cursor" "SELECT id, status FROM status_history WHERE charge_point_id = 'CP-0042' AND coalesce(status_at, received_at) >= '2026-01-01' AND coalesce(status_at, received_at) < '2027-01-01' AND (coalesce(status_at, received_at), id) < (timestamptz 'epoch' + 1780000000000000 * interval '1 microsecond', 90000) ORDER BY coalesce(status_at, received_at) DESC, id DESC LIMIT 51"
