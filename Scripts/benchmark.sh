#!/usr/bin/env bash
# Chargepath's benchmark: builds in release mode, starts each system under test in turn on this
# machine, drives it with `chargepath simulate`, and prints one table with absolute figures and
# ratios measured in the same run.
#
# Systems:  echo        the ceiling: chargepath-echo, a bare NIO WebSocket server (the stack of the
#                       charger gateway) that answers every CALL with a constant CALLRESULT
#                       on the event loop
#           peer        ocpp-csms from PyPI (asyncio/aiohttp, state in memory), in a venv made here
#           chargepath  `chargepath serve` on its embedded PostgreSQL, everything persisted
# Scenarios: heartbeat, sessions (sessions-max, sessions-half, sessions-1s), boot-storm, idle,
#            history (Chargepath only).
#
# Usage: Scripts/benchmark.sh [--quick] [--scenarios LIST] [--systems LIST] [--repeat N]
#                             [--idle-chargers N] [--no-build] [--record]
#   --quick           small fleets and short runs (a smoke test of the whole pipeline, ~3 minutes)
#   --scenarios LIST  comma list of heartbeat,sessions,boot-storm,idle,history (default: all)
#   --systems LIST    comma list of echo,peer,chargepath (default: all)
#   --repeat N        repetitions of each throughput scenario, systems interleaved (default 3; quick 1)
#   --idle-chargers N idle fleet size (default 15000: the server's 20,000-file limit; see BENCHMARKS.md)
#   --no-build        use the release binaries already built
#   --allocator A     jemalloc or system: the malloc of the Swift processes (the echo, Chargepath
#                     and what it starts, the simulator). Default: jemalloc (LD_PRELOAD), installing
#                     Debian's libjemalloc2 when root and missing; system when it cannot. See README.
#   --record          append the table, the machine and the commit to BENCHMARKS.md
# Results (simulator JSON, status lines, server logs, the table) go to .build-bench/runs/<time>/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/.build-bench"
REPORT="$ROOT/Scripts/benchmark_report.py"

QUICK=0
SCENARIOS="heartbeat,sessions,boot-storm,idle,history"
SYSTEMS="echo,peer,chargepath"
REPEAT=""
BUILD=1
RECORD=0
IDLE_CHARGERS=""
ALLOCATOR=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --scenarios) SCENARIOS="$2"; shift ;;
        --systems) SYSTEMS="$2"; shift ;;
        --repeat) REPEAT="$2"; shift ;;
        --idle-chargers) IDLE_CHARGERS="$2"; shift ;;
        --no-build) BUILD=0 ;;
        --allocator) ALLOCATOR="$2"; shift ;;
        --record) RECORD=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "benchmark.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
    esac
    shift
done

# ------------------------------------------------------------------------------------- the scale
if [ "$QUICK" = 1 ]; then
    : "${REPEAT:=1}"
    HB_CHARGERS=200;   HB_DURATION=6;   HB_WARMUP=2
    SS_CHARGERS=200;   SS_DURATION=9;   SS_SESSION=4;  SS_WARMUP=3
    BS_CHARGERS=1000;  BS_TIMEOUT=30
    : "${IDLE_CHARGERS:=1000}"; IDLE_RAMP=1000; IDLE_SETTLE=3
    HIST_TX=10000;     HIST_PER_TX=10;  HIST_SECONDS=2
else
    : "${REPEAT:=3}"
    HB_CHARGERS=1000;  HB_DURATION=20;  HB_WARMUP=4
    SS_CHARGERS=1000;  SS_DURATION=45;  SS_SESSION=20; SS_WARMUP=10
    BS_CHARGERS=10000; BS_TIMEOUT=60
    : "${IDLE_CHARGERS:=15000}"; IDLE_RAMP=1000; IDLE_SETTLE=20
    HIST_TX=100000;    HIST_PER_TX=10;  HIST_SECONDS=15
fi
SS_PAUSE=5                    # the simulator's pause between sessions (FleetConfiguration.sessionPause)
SS_HALF_TARGET=5000           # "p99 < 25 ms at half" the 10,000 msg/s aim
PER_SIMULATOR=15000           # chargers per simulator process (one process holds ~19k sockets)
HIST_CLIENTS=2

ECHO_PORT=9410
PEER_PORT=9420
CP_PORT=9430
CP_API_PORT=9431
CP_TOKEN="benchmark-token-0123456789abcdef"

# The Swift processes' malloc. glibc was a fifth of Chargepath's CPU samples under load (BENCHMARKS.md,
# 2026-11-27 16:50); jemalloc, preloaded, is what the README recommends for a deployment.
find_jemalloc() {
    local f
    JEMALLOC=""
    for f in /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /usr/lib/aarch64-linux-gnu/libjemalloc.so.2 /usr/lib64/libjemalloc.so.2 /usr/lib/libjemalloc.so.2; do
        [ -f "$f" ] && { JEMALLOC="$f"; return 0; }
    done
    return 0
}
find_jemalloc
# A fresh Debian machine lacks it: install it, as the peer's venv is made, unless told otherwise.
if [ -z "$JEMALLOC" ] && [ "$ALLOCATOR" != system ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "benchmark.sh: installing libjemalloc2 (the Swift processes' allocator; --allocator system to skip)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libjemalloc2 >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libjemalloc2 >/dev/null 2>&1; } || true
    find_jemalloc
fi
case "${ALLOCATOR:=$([ -n "$JEMALLOC" ] && echo jemalloc || echo system)}" in
    jemalloc) [ -n "$JEMALLOC" ] || { echo "benchmark.sh: --allocator jemalloc: no libjemalloc.so.2 here (apt-get install libjemalloc2)" >&2; exit 64; }
              SWIFT_ENV=(env "LD_PRELOAD=$JEMALLOC") ;;
    system)   SWIFT_ENV=(env -u LD_PRELOAD) ;;
    *) echo "benchmark.sh: --allocator is jemalloc or system" >&2; exit 64 ;;
esac

has() { case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac; }
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

RUN="$BENCH/runs/$(date -u +%Y%m%dT%H%M%SZ)"
log "benchmark.sh (pid $$): results in $RUN"
mkdir -p "$RUN"
RESULTS="$RUN/results.jsonl"
: > "$RESULTS"

# ---------------------------------------------------------------------------- process bookkeeping
SERVER_PID=""
SERVER_SYSTEM=""
SERVER_DATA=""
SIM_PIDS=()
SAMPLER_PID=""
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)

as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

stop_cluster() { # $1: chargepath data dir
    local dir="$1/postgres"
    [ -n "$PG_BIN" ] && [ -f "$dir/postmaster.pid" ] || return 0
    as_postgres "$PG_BIN/pg_ctl" -D "$dir" stop -m fast -w -t 60 >/dev/null 2>&1 || true
}

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$SERVER_SYSTEM" = chargepath ] && [ -n "$SERVER_DATA" ]; then
        stop_cluster "$SERVER_DATA"
        sleep 1.5   # the server's watchdog (1 s loop) must be gone before the next start adopts the cluster
    fi
    SERVER_PID=""; SERVER_SYSTEM=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null || true
    for p in "${SIM_PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
    stop_server
    for d in "$BENCH/data/chargepath" "$BENCH/data/history"; do stop_cluster "$d"; done
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------------------------------- build
if [ "$BUILD" = 1 ]; then
    log "building release (swift build -c release)"
    (cd "$ROOT" && swift build -c release --product chargepath && swift build -c release --product chargepath-echo) \
        > "$RUN/build.log" 2>&1 || { tail -30 "$RUN/build.log" >&2; exit 1; }
fi
BIN=$(cd "$ROOT" && swift build -c release --show-bin-path)
for b in chargepath chargepath-echo; do
    [ -x "$BIN/$b" ] || { echo "benchmark.sh: $BIN/$b is missing: run without --no-build" >&2; exit 1; }
done
SIM="$BIN/chargepath"

if has "$SYSTEMS" peer; then
    VENV="$BENCH/venv"
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import ocpp_csms' 2>/dev/null; then
        log "creating $VENV with ocpp-csms from PyPI"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check ocpp-csms > "$RUN/pip.log" 2>&1 \
            || { cat "$RUN/pip.log" >&2; exit 1; }
    fi
    PEER_VERSION=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("ocpp-csms"), "(ocpp", m.version("ocpp") + ", aiohttp", m.version("aiohttp") + ")")')
fi

# ------------------------------------------------------------------------------ systems under test
wait_tcp() { # port, seconds
    local i
    for i in $(seq 1 $(( $2 * 10 ))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# start_server SYSTEM LOGFILE [chargepath data dir]; sets SERVER_PID and SERVER_PORT.
start_server() {
    local system="$1" logfile="$2"
    SERVER_SYSTEM="$system"
    case "$system" in
        echo)
            SERVER_PORT=$ECHO_PORT
            "${SWIFT_ENV[@]}" "$BIN/chargepath-echo" --host 127.0.0.1 --port "$ECHO_PORT" > "$logfile" 2>&1 &
            SERVER_PID=$!
            wait_tcp "$ECHO_PORT" 30 ;;
        peer)
            SERVER_PORT=$PEER_PORT
            # The library's CentralSystem with its defaults and no event listener (the ocpp-csms CLI
            # prints every event to stdout; this is the peer at its fastest).
            "$VENV/bin/python" - "$PEER_PORT" > "$logfile" 2>&1 <<'PY' &
import asyncio, logging, sys
from ocpp_csms import CentralSystem
logging.basicConfig(level=logging.WARNING)
async def main():
    async with CentralSystem(host="127.0.0.1", port=int(sys.argv[1])) as cs:
        print("listening on port", cs.port, flush=True)
        await asyncio.Event().wait()
asyncio.run(main())
PY
            SERVER_PID=$!
            wait_tcp "$PEER_PORT" 30 ;;
        chargepath)
            SERVER_PORT=$CP_PORT
            SERVER_DATA="$3"
            # Every run starts from an empty database, as the echo and the peer start with nothing:
            # otherwise one run's leftovers (its fleet's sessions, interrupted when the simulator
            # left, closing after their grace period) load the next run's measurement.
            stop_cluster "$SERVER_DATA"; rm -rf "$SERVER_DATA"
            "${SWIFT_ENV[@]}" "$BIN/chargepath" serve --data-dir "$SERVER_DATA" --ocpp-host 127.0.0.1 --ocpp-port "$CP_PORT" \
                --api-port "$CP_API_PORT" --api-token "$CP_TOKEN" --log-level warning --heartbeat-interval 300 \
                > "$logfile" 2>&1 &
            SERVER_PID=$!
            local i
            for i in $(seq 1 1200); do
                curl -sf -o /dev/null "http://127.0.0.1:$CP_API_PORT/ready" && return 0
                kill -0 "$SERVER_PID" 2>/dev/null || break
                sleep 0.1
            done
            echo "chargepath did not become ready; its log:" >&2; tail -20 "$logfile" >&2; return 1 ;;
    esac || { echo "$system did not start; its log:" >&2; tail -20 "$logfile" >&2; return 1; }
}

url_of() { echo "ws://127.0.0.1:$SERVER_PORT/ocpp"; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)

# PostgreSQL's own memory for a chargepath run: the proportional set size of the postmaster and
# its children (shared buffers counted once).
pg_pss_mib() {
    local pidfile="$SERVER_DATA/postgres/postmaster.pid" pm pids
    [ -f "$pidfile" ] || { echo 0; return; }
    pm=$(head -1 "$pidfile")
    pids="$pm $(ps -o pid= --ppid "$pm" | tr '\n' ' ')"
    for p in $pids; do awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null; done \
        | awk '{s += $1} END {printf "%.1f", s / 1024}'
}

psql_cp() { # psql on a chargepath data dir: $1 data dir, rest psql arguments
    local dir="$1"; shift
    PGPASSWORD=$(cat "$dir/postgres.password") psql -h 127.0.0.1 -p "$(cat "$dir/postgres.port")" \
        -U chargepath -d chargepath -X -Atq -v ON_ERROR_STOP=1 "$@"
}

# server_figures: key=value figures of the running server after a scenario.
server_figures() { # [rss KiB to report instead of the current one]
    local rss hwm
    rss=${1:-$(rss_kib "$SERVER_PID")}; hwm=$(hwm_kib "$SERVER_PID")
    printf 'rss_mib=%s hwm_mib=%s server_cpu_s=%s' \
        "$(awk -v k="$rss" 'BEGIN {printf "%.1f", k / 1024}')" \
        "$(awk -v k="$hwm" 'BEGIN {printf "%.1f", k / 1024}')" \
        "$(awk -v a="$CPU_BEFORE" -v b="$(cpu_ticks "$SERVER_PID")" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')"
    [ "$SERVER_SYSTEM" = chargepath ] && printf ' pg_pss_mib=%s' "$(pg_pss_mib)"
    return 0
}

pg_ticks() {
    local pidfile="$SERVER_DATA/postgres/postmaster.pid" pm
    [ -f "$pidfile" ] || { echo 0; return; }
    pm=$(head -1 "$pidfile")
    for c in $pm $(ps -o pid= --ppid "$pm"); do cpu_ticks "$c"; done | awk '{s += $1} END {print s + 0}'
}

# cpu_snapshot: ticks of the machine (busy), the server, PostgreSQL and the simulator processes.
cpu_snapshot() {
    local busy srv pg=0 sim=0 p
    busy=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat)
    srv=$(cpu_ticks "$SERVER_PID")
    [ "$SERVER_SYSTEM" = chargepath ] && pg=$(pg_ticks)
    for p in "${SIM_PIDS[@]}"; do sim=$(( sim + $(cpu_ticks "$p") )); done
    echo "$busy $srv $pg $sim $(date +%s.%N)"
}

# simulate NAME PREFIX CHARGERS ARGS...: runs the fleet (split over several simulator processes
# above PER_SIMULATOR chargers; fleets above 2,000 connect from 40 source addresses per process)
# and leaves NAME.<n>.json/.status. Charger ids are <PREFIX><n>-<number>.
SIM_JSON=(); SIM_STATUS=()
# scrape_metrics FILE: Chargepath's /metrics into FILE (nothing for the other systems).
scrape_metrics() {
    rm -f "$1"
    [ "${CURRENT_SYSTEM:-}" = chargepath ] || return 0
    curl -sf -H "Authorization: Bearer $CP_TOKEN" "http://127.0.0.1:$CP_API_PORT/metrics" > "$1" || rm -f "$1"
}

simulate() {
    local name="$1" prefix="$2" chargers="$3"; shift 3
    local procs=$(( (chargers + PER_SIMULATOR - 1) / PER_SIMULATOR )) p n left=$chargers rc=0
    SIM_JSON=(); SIM_STATUS=(); SIM_PIDS=()
    for p in $(seq 1 "$procs"); do
        n=$(( left / (procs - p + 1) )); left=$(( left - n ))
        local extra=()
        [ "$chargers" -gt 2000 ] && extra=(--source-addresses "127.0.$p.1-127.0.$p.40")
        SIM_JSON+=("$name.$p.json"); SIM_STATUS+=("$name.$p.status")
        "${SWIFT_ENV[@]}" "$SIM" simulate --url "$(url_of)" --chargers "$n" --id-prefix "$prefix$p-" --json \
            "${extra[@]}" "$@" > "$name.$p.json" 2> "$name.$p.status" &
        SIM_PIDS+=($!)
    done
    # Where the CPU goes between CPU_FROM and CPU_TO seconds into the run (after the warm-up):
    # cores used by the server, PostgreSQL, the simulator, and everything else on the machine.
    # Chargepath's own /metrics at both ends of that window: the server's share of the round trip
    # (its handling time, from the frame read to the answer written), beside what the simulator saw.
    CPU_FIGURES=""
    if [ -n "${CPU_FROM:-}" ]; then
        local a b
        sleep "$CPU_FROM"; a=$(cpu_snapshot); scrape_metrics "$name.metrics.from"
        sleep "$(awk -v f="$CPU_FROM" -v t="$CPU_TO" 'BEGIN {print t - f}')"; b=$(cpu_snapshot); scrape_metrics "$name.metrics.to"
        CPU_FIGURES=$(echo "$a $b" | awk -v hz="$CLK_TCK" '{
            dt = $10 - $5; if (dt <= 0) exit
            total = ($6 - $1) / hz / dt; srv = ($7 - $2) / hz / dt; pg = ($8 - $3) / hz / dt; sim = ($9 - $4) / hz / dt
            other = total - srv - pg - sim; if (other < 0) other = 0
            printf "server_cores=%.2f pg_cores=%.2f sim_cores=%.2f other_cores=%.2f", srv, pg, sim, other }')
    fi
    for p in "${SIM_PIDS[@]}"; do wait "$p" || rc=$?; done
    SIM_PIDS=()
    if [ "$rc" != 0 ]; then
        echo "simulator failed (exit $rc) for $name:" >&2; tail -5 "${SIM_STATUS[@]}" >&2
    fi
    return 0
}

# register_tags PREFIX CHARGERS: Chargepath authorizes only id tags an operator registered
# (Scripts/register-id-tags.py, through the operator API).
register_tags() {
    python3 "$ROOT/Scripts/register-id-tags.py" "$CP_API_PORT" "$CP_TOKEN" "$1" "$2" "$PER_SIMULATOR"
}

# one_run SYSTEM SCENARIO REP PREFIX CHARGERS WARMUP SIMULATOR-ARGS...
one_run() {
    local system="$1" scenario="$2" rep="$3" prefix="$4" chargers="$5" warmup="$6"; shift 6
    local base="$RUN/$scenario/$system.$rep"
    mkdir -p "$RUN/$scenario"
    CURRENT_SYSTEM="$system"
    start_server "$system" "$base.server.log" "$BENCH/data/chargepath" || return 1
    [ "$system" = chargepath ] && case "$scenario" in sessions*) register_tags "$prefix" "$chargers" ;; esac
    CPU_BEFORE=$(cpu_ticks "$SERVER_PID")
    local rss_before; rss_before=$(rss_kib "$SERVER_PID")
    log "$scenario: $system (run $rep/$REPEAT, $chargers chargers)"
    simulate "$base" "$prefix" "$chargers" "$@"
    local extra; extra="$(server_figures) rss_before_mib=$(awk -v k="$rss_before" 'BEGIN {printf "%.1f", k / 1024}') $CPU_FIGURES"
    if [ "$scenario" = boot-storm ] && [ "$system" = chargepath ]; then
        extra="$extra recorded=$(psql_cp "$SERVER_DATA" -c "SELECT count(*) FROM charge_points WHERE charge_point_id LIKE '$prefix%' AND last_boot_at IS NOT NULL")"
    fi
    # shellcheck disable=SC2086
    local metrics=()
    [ -f "$base.metrics.from" ] && [ -f "$base.metrics.to" ] && metrics=(--metrics "$base.metrics.from" "$base.metrics.to")
    python3 "$REPORT" sim --results "$RESULTS" --system "$system" --scenario "$scenario" --rep "$rep" \
        --warmup "$warmup" --json "${SIM_JSON[@]}" --status "${SIM_STATUS[@]}" "${metrics[@]}" --extra $extra > "$base.figures.json"
    log "  $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("steady %s calls/s, p99 %s ms, accepted %s/%s, all accepted after %s s, failures %s, RSS %s MiB" % (round(r["steady_calls_per_s"] or 0), r.get("lat_p99_ms"), r["boot_accepted"], r["chargers"], r.get("all_accepted_s"), r["connect_failures"] + r["failed_calls"], r.get("rss_mib")))' "$base.figures.json")"
    stop_server
}

SYSTEM_LIST=()
for s in echo peer chargepath; do has "$SYSTEMS" "$s" && SYSTEM_LIST+=("$s"); done

rm -rf "$BENCH/data/chargepath" "$BENCH/data/history"
mkdir -p "$BENCH/data"

# 1. Heartbeat, unthrottled.
if has "$SCENARIOS" heartbeat; then
    for rep in $(seq 1 "$REPEAT"); do
        for s in "${SYSTEM_LIST[@]}"; do
            CPU_FROM=$((HB_WARMUP + 1)) CPU_TO=$((HB_DURATION - 1)) one_run "$s" heartbeat "$rep" "hb$rep-" "$HB_CHARGERS" 0 --scenario heartbeat --ramp-up 0 --duration "$HB_DURATION" \
                --warmup "$HB_WARMUP"
        done
    done
fi

# 2. Sessions: saturated (MeterValues as fast as each charger's one-call-at-a-time allows), at about
# half the 10,000 msg/s aim, and with MeterValues every second as the issue describes the fleet.
if has "$SCENARIOS" sessions; then
    # Offered rate ≈ chargers × in-session share / interval + 8 session messages per cycle.
    HALF_INTERVAL=$(awk -v n="$SS_CHARGERS" -v d="$SS_SESSION" -v p="$SS_PAUSE" -v t="$SS_HALF_TARGET" \
        'BEGIN { share = d / (d + p); other = n * 8 / (d + p); printf "%.3f", n * share / (t - other) }')
    for rep in $(seq 1 "$REPEAT"); do
        for s in "${SYSTEM_LIST[@]}"; do
            CPU_FROM=$((SS_WARMUP + 1)) CPU_TO=$((SS_DURATION - 1)) one_run "$s" sessions-max "$rep" "ss" "$SS_CHARGERS" 0 --scenario sessions --ramp-up 0 --duration "$SS_DURATION" \
                --warmup "$SS_WARMUP" --session-duration "$SS_SESSION" --meter-interval 0.01
            CPU_FROM=$((SS_WARMUP + 1)) CPU_TO=$((SS_DURATION - 1)) one_run "$s" sessions-half "$rep" "ss" "$SS_CHARGERS" 0 --scenario sessions --ramp-up 0 --duration "$SS_DURATION" \
                --warmup "$SS_WARMUP" --session-duration "$SS_SESSION" --meter-interval "$HALF_INTERVAL"
            CPU_FROM=$((SS_WARMUP + 1)) CPU_TO=$((SS_DURATION - 1)) one_run "$s" sessions-1s "$rep" "ss" "$SS_CHARGERS" 0 --scenario sessions --ramp-up 0 --duration "$SS_DURATION" \
                --warmup "$SS_WARMUP" --session-duration "$SS_SESSION" --meter-interval 1
        done
    done
fi

# 3. Boot storm: all connect and boot at once.
if has "$SCENARIOS" boot-storm; then
    for rep in $(seq 1 "$REPEAT"); do
        for s in "${SYSTEM_LIST[@]}"; do
            one_run "$s" boot-storm "$rep" "bs$rep-" "$BS_CHARGERS" 0 --scenario boot-storm --ramp-up 0 --duration "$BS_TIMEOUT"
        done
    done
fi

# 4. Idle fleet: connected chargers heartbeating every 300 s (a global rate of N/300 Heartbeat/s).
if has "$SCENARIOS" idle; then
    for s in "${SYSTEM_LIST[@]}"; do
        base="$RUN/idle/$s.1"; mkdir -p "$RUN/idle"
        start_server "$s" "$base.server.log" "$BENCH/data/chargepath"
        sleep 2
        CPU_BEFORE=$(cpu_ticks "$SERVER_PID")
        rss_before=$(rss_kib "$SERVER_PID")
        duration=$(( IDLE_CHARGERS / IDLE_RAMP + IDLE_SETTLE + 5 ))
        log "idle: $s ($IDLE_CHARGERS chargers, ${duration}s)"
        # Sample the server's RSS every second while the fleet runs.
        ( while kill -0 "$SERVER_PID" 2>/dev/null; do echo "$(date +%s) $(rss_kib "$SERVER_PID")"; sleep 1; done ) > "$base.rss" &
        SAMPLER_PID=$!
        simulate "$base" "id" "$IDLE_CHARGERS" --scenario heartbeat --ramp-up "$IDLE_RAMP" --duration "$duration" \
            --rate "$(awk -v n="$IDLE_CHARGERS" 'BEGIN {printf "%.2f", n / 300}')" --quiet
        kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
        # The plateau: the largest of the last 5 samples taken while the fleet was connected.
        rss_with=$(tail -n 6 "$base.rss" | head -n 5 | awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}')
        connected=$(python3 -c 'import json,sys; print(sum(json.load(open(p))["peakConnected"] for p in sys.argv[1:]))' "${SIM_JSON[@]}")
        figures="$(server_figures "$rss_with") rss_before_mib=$(awk -v k="$rss_before" 'BEGIN {printf "%.1f", k / 1024}')"
        kib=$(awk -v a="$rss_before" -v b="$rss_with" -v n="$connected" 'BEGIN {if (n > 0) printf "%.2f", (b - a) / n; else print 0}')
        # shellcheck disable=SC2086
        python3 "$REPORT" sim --results "$RESULTS" --system "$s" --scenario idle --rep 1 \
            --json "${SIM_JSON[@]}" --status "${SIM_STATUS[@]}" --extra $figures kib_per_connection="$kib" > "$base.figures.json"
        log "  $connected connected; RSS $((rss_before / 1024)) → $((rss_with / 1024)) MiB: $kib KiB per connection"
        stop_server
    done
fi

# 5. History: 100,000 transactions and 1,000,000 meter values, filtered pages of 50.
# The operator's pages through the HTTP API (api-*: Scripts/history-api-load.py, Python clients,
# latency from request to last byte) and, below the API, the SQL such pages run (pgbench).
HISTORY_SOURCE="the HTTP API (api-*, Python clients) and SQL through pgbench"
if has "$SCENARIOS" history && has "$SYSTEMS" chargepath; then
    base="$RUN/history"; mkdir -p "$base"
    start_server chargepath "$base/server.log" "$BENCH/data/history"
    log "history: loading $HIST_TX transactions and $((HIST_TX * HIST_PER_TX)) meter values"
    start_load=$(date +%s)
    psql_cp "$SERVER_DATA" -v tx="$HIST_TX" -v per="$HIST_PER_TX" <<'SQL'
-- 1,000 charge points, 5,000 id tags; transactions every 5 minutes over the last ~year, each with
-- `per` periodic energy readings. The same tables and indexes as production (the migrations).
INSERT INTO charge_points (charge_point_id, vendor, model, last_boot_at, last_seen_at)
SELECT 'H-' || lpad(i::text, 4, '0'), 'Bench', 'History', now(), now() FROM generate_series(1, 1000) i;
INSERT INTO id_tags (id_tag, status) SELECT 'TAG-' || i, 'Accepted' FROM generate_series(1, 5000) i;
INSERT INTO transactions (charge_point_id, connector_id, id_tag, id_tag_status, meter_start, started_at,
                          meter_stop, stopped_at, stop_reason, received_start_at, received_stop_at)
SELECT 'H-' || lpad((1 + i % 1000)::text, 4, '0'), 1 + (i / 1000) % 2, 'TAG-' || (1 + (i * 7919) % 5000), 'Accepted',
       (i % 1000) * 100000, ts, (i % 1000) * 100000 + 20000, ts + interval '1 hour', 'Local', ts,
       ts + interval '1 hour'
FROM generate_series(1, :tx) i, LATERAL (SELECT timestamptz '2026-01-01 00:00:00+00' + i * interval '5 minutes' AS ts) t;
-- One reading (migration 0009) per energy value: `per` readings of one sampled value each; the
-- hash of its samples is its unique key's (migration 0010).
INSERT INTO meter_readings (charge_point_id, connector_id, transaction_id, sampled_at, samples, source, received_at, samples_hash)
SELECT t.charge_point_id, t.connector_id, t.transaction_id, t.started_at + k * interval '6 minutes',
       r.samples, 'MeterValues', t.started_at + k * interval '6 minutes', meter_samples_hash(r.samples)
FROM transactions t CROSS JOIN generate_series(1, :per) k
CROSS JOIN LATERAL (SELECT jsonb_build_array(jsonb_build_object('value', (t.meter_start + k * 2000)::text, 'context', 'Sample.Periodic',
           'format', 'Raw', 'measurand', 'Energy.Active.Import.Register', 'unit', 'Wh')) AS samples) r
WHERE t.charge_point_id LIKE 'H-%';
VACUUM ANALYZE;
SQL
    log "  loaded in $(( $(date +%s) - start_load )) s"
    # The pages an operator asks for: 50 rows, newest first, filtered.
    last_day=$(( HIST_TX / 288 ))   # transactions every 5 minutes: 288 a day
    cat > "$base/by-charge-point.sql" <<SQL
\set cp random(1, 1000)
\set page random(0, 1)
SELECT transaction_id, charge_point_id, connector_id, id_tag, meter_start, meter_stop, started_at, stopped_at, stop_reason
FROM transactions WHERE charge_point_id = 'H-' || lpad(:cp::text, 4, '0')
ORDER BY started_at DESC LIMIT 50 OFFSET 50 * :page;
SQL
    cat > "$base/by-id-tag-and-period.sql" <<SQL
\set tag random(1, 5000)
\set day random(0, $last_day)
SELECT transaction_id, charge_point_id, connector_id, id_tag, meter_start, meter_stop, started_at, stopped_at
FROM transactions WHERE id_tag = 'TAG-' || :tag
  AND started_at >= timestamptz '2026-01-01 00:00:00+00' + :day * interval '1 day' - interval '90 days'
  AND started_at <  timestamptz '2026-01-01 00:00:00+00' + :day * interval '1 day'
ORDER BY started_at DESC LIMIT 50;
SQL
    cat > "$base/by-period-deep-page.sql" <<SQL
\set day random(0, $last_day)
\set page random(0, 20)
SELECT transaction_id, charge_point_id, connector_id, id_tag, meter_start, meter_stop, started_at, stopped_at
FROM transactions
WHERE started_at >= timestamptz '2026-01-01 00:00:00+00' + :day * interval '1 day' - interval '30 days'
  AND started_at <  timestamptz '2026-01-01 00:00:00+00' + :day * interval '1 day'
ORDER BY started_at DESC LIMIT 50 OFFSET 50 * :page;
SQL
    cat > "$base/by-period-with-count.sql" <<SQL
\set day random(0, $last_day)
SELECT count(*) FROM transactions
WHERE started_at >= timestamptz '2026-01-01 00:00:00+00' + :day * interval '1 day' - interval '30 days'
  AND started_at <  timestamptz '2026-01-01 00:00:00+00' + :day * interval '1 day';
SELECT transaction_id, charge_point_id, id_tag, meter_stop - meter_start AS energy_wh, started_at, stopped_at
FROM transactions
WHERE started_at >= timestamptz '2026-01-01 00:00:00+00' + :day * interval '1 day' - interval '30 days'
  AND started_at <  timestamptz '2026-01-01 00:00:00+00' + :day * interval '1 day'
ORDER BY started_at DESC LIMIT 50;
SQL
    cat > "$base/charge-point-with-meter-values.sql" <<SQL
\set cp random(1, 1000)
SELECT t.transaction_id, t.id_tag, t.started_at, t.stopped_at, t.meter_stop - t.meter_start AS energy_wh,
       mv.samples, mv.last_sample_at, mv.last_value
FROM transactions t
LEFT JOIN LATERAL (
    SELECT count(*) AS samples, max(sampled_at) AS last_sample_at,
           (array_agg(value ORDER BY sampled_at DESC))[1] AS last_value
    FROM meter_values m WHERE m.transaction_id = t.transaction_id
) mv ON true
WHERE t.charge_point_id = 'H-' || lpad(:cp::text, 4, '0')
ORDER BY t.started_at DESC LIMIT 50;
SQL
    cat > "$base/transaction-meter-values.sql" <<SQL
\set tx random(1, $HIST_TX)
SELECT sampled_at, value, measurand, unit, context FROM meter_values
WHERE transaction_id = (SELECT min(transaction_id) FROM transactions WHERE charge_point_id LIKE 'H-%') + :tx - 1
ORDER BY sampled_at;
SQL
    for q in by-charge-point by-id-tag-and-period by-period-deep-page by-period-with-count charge-point-with-meter-values transaction-meter-values; do
        log "  pgbench $q (${HIST_SECONDS}s, $HIST_CLIENTS clients)"
        (cd "$base" && PGPASSWORD=$(cat "$SERVER_DATA/postgres.password") pgbench -n -M extended \
            -h 127.0.0.1 -p "$(cat "$SERVER_DATA/postgres.port")" -U chargepath -c "$HIST_CLIENTS" -j 1 \
            -T "$HIST_SECONDS" -f "$q.sql" -l --log-prefix="$q.log" chargepath > "$q.pgbench.txt" 2>&1) \
            || { cat "$base/$q.pgbench.txt" >&2; exit 1; }
        python3 "$REPORT" pgbench --results "$RESULTS" --scenario history --query "$q" --log-prefix "$base/$q.log" > /dev/null
    done
    first_tx=$(psql_cp "$SERVER_DATA" -Atc "SELECT min(transaction_id) FROM transactions WHERE charge_point_id LIKE 'H-%'")
    for q in api-by-charge-point api-by-id-tag-and-period api-by-period-pages api-transaction-detail; do
        log "  HTTP $q (${HIST_SECONDS}s, $HIST_CLIENTS clients)"
        python3 "$ROOT/Scripts/history-api-load.py" --port "$CP_API_PORT" --token "$CP_TOKEN" --query "$q" \
            --seconds "$HIST_SECONDS" --clients "$HIST_CLIENTS" --transactions "$HIST_TX" --first-transaction "$first_tx" \
            --log-prefix "$base/$q.log" > "$base/$q.txt" 2>&1 || { cat "$base/$q.txt" >&2; exit 1; }
        python3 "$REPORT" pgbench --results "$RESULTS" --scenario history --query "$q" --log-prefix "$base/$q.log." > /dev/null
    done
    psql_cp "$SERVER_DATA" -c "SELECT (SELECT count(*) FROM transactions) || ' transactions, ' || (SELECT count(*) FROM meter_values) || ' meter values, ' || pg_size_pretty(pg_database_size('chargepath'))" > "$base/size.txt"
    for q in by-charge-point by-period-deep-page charge-point-with-meter-values; do
        sed -e '/^\\set/d' -e "s/:cp/500/g; s/:page/10/g; s/:day/$last_day/g; s/:tag/42/g; s/:tx/77/g" "$base/$q.sql" \
            | sed '1s/^/EXPLAIN (ANALYZE, BUFFERS) /' | psql_cp "$SERVER_DATA" > "$base/$q.explain.txt" 2>&1 || true
    done
    stop_server
fi

# ----------------------------------------------------------------------------------- the table
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)
cat > "$RUN/meta.json" <<JSON
{"heartbeat_chargers": $HB_CHARGERS, "boot_storm_chargers": $BS_CHARGERS, "idle_chargers": $IDLE_CHARGERS,
 "history_transactions": "$HIST_TX", "history_meter_values": "$((HIST_TX * HIST_PER_TX))",
 "history_clients": $HIST_CLIENTS, "history_source": "$HISTORY_SOURCE"}
JSON
{
    echo "Run $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT$DIRTY, $( [ "$QUICK" = 1 ] && echo quick || echo full ) scale, $REPEAT repetition(s)."
    echo "Machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr), load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
    fleets=""
    has "$SCENARIOS" heartbeat && fleets="$fleets heartbeat $HB_CHARGERS chargers ${HB_DURATION}s (${HB_WARMUP}s warm-up);"
    has "$SCENARIOS" sessions && fleets="$fleets sessions $SS_CHARGERS chargers ${SS_DURATION}s (${SS_WARMUP}s warm-up), ${SS_SESSION}s sessions, MeterValues every 0.01 s (max), $HALF_INTERVAL s (half), 1 s;"
    has "$SCENARIOS" boot-storm && fleets="$fleets boot storm $BS_CHARGERS at once;"
    has "$SCENARIOS" idle && fleets="$fleets idle $IDLE_CHARGERS;"
    echo "Peer: ocpp-csms ${PEER_VERSION:-not run}. Fleets:${fleets%;}."
    echo "Allocator of the Swift processes (echo, Chargepath, simulator): $([ "$ALLOCATOR" = jemalloc ] && echo "jemalloc ($JEMALLOC, preloaded)" || echo "the system's (glibc)")."
    echo
    python3 "$REPORT" table --results "$RESULTS" --meta "$RUN/meta.json"
} > "$RUN/table.md"
echo
cat "$RUN/table.md"
echo
echo "Raw results: $RUN"

if [ "$RECORD" = 1 ]; then
    {
        echo
        echo "## $(date -u '+%Y-%m-%d %H:%M UTC') · $COMMIT · $( [ "$QUICK" = 1 ] && echo quick || echo full )"
        echo
        cat "$RUN/table.md"
    } >> "$ROOT/BENCHMARKS.md"
    echo "Appended to BENCHMARKS.md"
fi
