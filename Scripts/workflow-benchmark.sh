#!/usr/bin/env bash
# The workflow worker under load: how fast `chargepath serve` starts the workflows that charger
# messages ask for (rows of workflow_starts) and applies their steps, while chargers keep the
# database pool busy. Prints figures; asserts nothing.
#
# One run: a fresh server on its embedded PostgreSQL; SYNTHETIC ChargingSession starts inserted
# at once into workflow_starts (sessions of chargers that are not connected: each start is a
# real start, then the execution waits); then `chargepath simulate --scenario sessions` with
# CHARGERS chargers sending MeterValues as fast as they can for DURATION seconds (each
# StartTransaction adds a workflow_starts row, each StatusNotification/StopTransaction an event
# for its session). The database is sampled every SAMPLE seconds; after the load, the worker
# gets up to DRAIN seconds to empty the backlog.
#
# --scenario boot-storm instead: CHARGERS chargers connect and boot at once and stay for DURATION
# seconds; each Accepted boot asks for a Provisioning workflow (calls to the charger, answers as
# events), so starts, steps and calls are all measured. No synthetic starts unless asked for.
#
# Usage: Scripts/workflow-benchmark.sh [--bin PATH] [--label TEXT] [--scenario sessions|boot-storm]
#            [--chargers N] [--duration S] [--synthetic N] [--drain S] [--sample S]
#            [--meter-interval S] [-- SERVE-ARGS...]
#   --bin PATH        the chargepath binary (default .build/release/chargepath; build it with
#                     `swift build -c release --product chargepath`)
#   SERVE-ARGS        passed to `chargepath serve`, e.g. -- --workflow-lanes 1 --workflow-start-batch 1
# Data and logs go to a directory under ${TMPDIR:-/tmp} that is removed at the end
# (KEEP=1 keeps it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="$ROOT/.build/release/chargepath"
LABEL=""
CHARGERS=1000
DURATION=30
SYNTHETIC=5000
DRAIN=60
SAMPLE=5
METER_INTERVAL=0.01
SESSION=20
SERVE_ARGS=()
SCENARIO=sessions
SYNTHETIC_SET=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN="$2"; shift ;;
        --label) LABEL="$2"; shift ;;
        --chargers) CHARGERS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --synthetic) SYNTHETIC="$2"; SYNTHETIC_SET=1; shift ;;
        --scenario) SCENARIO="$2"; shift ;;
        --drain) DRAIN="$2"; shift ;;
        --sample) SAMPLE="$2"; shift ;;
        --meter-interval) METER_INTERVAL="$2"; shift ;;
        --) shift; SERVE_ARGS=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "workflow-benchmark.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
    esac
    shift
done
case "$SCENARIO" in
    sessions) SIM_ARGS=(--scenario sessions --warmup 5 --session-duration "$SESSION" --meter-interval "$METER_INTERVAL") ;;
    # All connect and boot at once, then stay (heartbeats at a low global rate) to answer the calls.
    boot-storm) SIM_ARGS=(--scenario heartbeat --rate 100); [ -n "$SYNTHETIC_SET" ] || SYNTHETIC=0 ;;
    *) echo "workflow-benchmark.sh: unknown scenario $SCENARIO" >&2; exit 64 ;;
esac
[ -x "$BIN" ] || { echo "workflow-benchmark.sh: $BIN is missing (swift build -c release --product chargepath)" >&2; exit 1; }

OCPP_PORT=9440
API_PORT=9441
TOKEN="benchmark-token-0123456789abcdef"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/engine-wfbench.XXXXXX")
chmod 755 "$WORK"   # the embedded PostgreSQL runs as another user when this is root
DATA="$WORK/data"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
SERVER_PID=""
SIM_PID=""
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$SIM_PID" ] && kill -TERM "$SIM_PID" 2>/dev/null || true
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ -n "$PG_BIN" ] && [ -f "$DATA/postgres/postmaster.pid" ]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$DATA/postgres" stop -m fast -w -t 60 >/dev/null 2>&1 || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql_cp() {
    PGPASSWORD=$(cat "$DATA/postgres.password") psql -h 127.0.0.1 -p "$(cat "$DATA/postgres.port")" \
        -U chargepath -d chargepath -X -Atq -v ON_ERROR_STOP=1 "$@"
}

# ------------------------------------------------------------------------------------ the server
mkdir -p "$DATA"
"$BIN" serve --data-dir "$DATA" --ocpp-host 127.0.0.1 --ocpp-port "$OCPP_PORT" --api-port "$API_PORT" \
    --api-token "$TOKEN" --log-level warning --heartbeat-interval 300 "${SERVE_ARGS[@]}" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 1200); do
    curl -sf -o /dev/null "http://127.0.0.1:$API_PORT/ready" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/server.log" >&2; exit 1; }
    sleep 0.1
done

# Chargepath authorizes only registered id tags: the simulator's are TAG-<charger id>.
python3 "$ROOT/Scripts/register-id-tags.py" "$API_PORT" "$TOKEN" wb "$CHARGERS"

# ------------------------------------------------------------------------------- the measurement
# One sample: seconds since t0, workflow_starts waiting, executions, of them running, steps applied (history
# 'event' entries), inbox events due and not applied, transactions started by chargers.
sample() {
    psql_cp -F ' ' -c "SELECT (SELECT count(*) FROM workflow_starts), (SELECT count(*) FROM workflow_executions),
        (SELECT count(*) FROM workflow_executions WHERE status = 'RUNNING'),
        (SELECT count(*) FROM workflow_history WHERE kind = 'event'),
        (SELECT count(*) FROM workflow_inbox WHERE available_at <= now()), (SELECT count(*) FROM transactions)" \
        | awk -v t="$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')" '{print t, $0}'
}

log "inserting $SYNTHETIC synthetic ChargingSession starts"
psql_cp -v n="$SYNTHETIC" <<'SQL'
INSERT INTO workflow_starts (execution_id, workflow, input, created_at)
SELECT 'synthetic-' || i, 'ChargingSession', jsonb_build_object(
    'chargePointId', 'SYN-' || i, 'connectorId', 1, 'transactionId', 100000000 + i, 'idTag', 'TAG-SYN',
    'meterStart', 0, 'limits', '{}'::jsonb, 'interruptGraceSeconds', 60), now()
FROM generate_series(1, :n) i;
SQL

T0=$(date +%s.%N)
SAMPLES="$WORK/samples.txt"
sample > "$SAMPLES"
log "load: $CHARGERS chargers, $SCENARIO, ${DURATION}s"
"$BIN" simulate --url "ws://127.0.0.1:$OCPP_PORT/ocpp" --chargers "$CHARGERS" --id-prefix "wb1-" --json --quiet \
    --ramp-up 0 --duration "$DURATION" "${SIM_ARGS[@]}" > "$WORK/sim.json" 2> "$WORK/sim.status" &
SIM_PID=$!
while kill -0 "$SIM_PID" 2>/dev/null; do
    sleep "$SAMPLE"
    sample | tee -a "$SAMPLES" | awk '{printf "  t=%5.1fs starts waiting %6d, executions %6d (running %6d), steps %6d, events due %5d, transactions %6d\n", $1, $2, $3, $4, $5, $6, $7}' >&2
done
wait "$SIM_PID" || log "the simulator exited with $?"
SIM_PID=""
END_LOAD=$(sample); echo "$END_LOAD" >> "$SAMPLES"
log "drain: up to ${DRAIN}s without chargers"
while :; do
    s=$(sample); echo "$s" >> "$SAMPLES"
    read -r t w _ _ _ d _ <<< "$s"
    if [ "$w" = 0 ] && [ "$d" = 0 ]; then break; fi
    awk -v t="$t" -v e="$(echo "$END_LOAD" | cut -d' ' -f1)" -v m="$DRAIN" 'BEGIN {exit !(t - e < m)}' || break
    sleep 1
done
END_DRAIN="$s"

python3 - "$SAMPLES" "$WORK/sim.json" "$LABEL" "$END_LOAD" "$END_DRAIN" "${SERVE_ARGS[*]:-}" <<'PY'
import json, sys
# Columns: t, starts waiting, executions, running, steps, events due, transactions.
samples = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
label = sys.argv[3]
load_end = list(map(float, sys.argv[4].split())); drain_end = list(map(float, sys.argv[5].split()))
first = samples[0]
try:
    calls = json.load(open(sys.argv[2])).get("callsPerSecond")
except Exception:
    calls = None
dt = load_end[0] - first[0]
started = load_end[2] - first[2]
finished = (load_end[2] - load_end[3]) - (first[2] - first[3])
steps = load_end[4] - first[4]
tx = load_end[6] - first[6]
print(f"== {label or 'run'} (serve {sys.argv[6] or 'defaults'})")
print(f"under load ({dt:.0f} s): {started / dt:.1f} starts/s ({started:.0f} executions, {finished:.0f} finished), "
      f"{steps / dt:.1f} steps/s; chargers: {tx:.0f} transactions, {calls if calls is None else round(calls)} calls/s")
print(f"backlog at the end of the load: {load_end[1]:.0f} workflow_starts, {load_end[5]:.0f} events due")
done = next((r[0] for r in samples if r[2] > first[2] and r[1] == 0 and r[3] == 0), None)
if done is not None:
    print(f"every execution started and finished by t = {done:.0f} s (sampled every few seconds)")
dd = drain_end[0] - load_end[0]
dstarted = drain_end[2] - load_end[2]
print(f"drain ({dd:.0f} s, no chargers): {dstarted / dd if dd > 0 else 0:.1f} starts/s; "
      f"left: {drain_end[1]:.0f} workflow_starts, {drain_end[5]:.0f} events due")
PY
