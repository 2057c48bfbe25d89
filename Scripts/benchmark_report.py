#!/usr/bin/env python3
"""Helper of Scripts/benchmark.sh: turns simulator output into figures and figures into a table.

  benchmark_report.py sim   --results R --system S --scenario C --rep N --json F... --status F...
  benchmark_report.py kv    --results R --system S --scenario C --rep N key=value...
  benchmark_report.py pgbench --results R --scenario C --rep N --query Q --log-prefix P
  benchmark_report.py table --results R [--meta M]

R is a JSON-lines file: one record per measurement {system, scenario, rep, figures...}.
Standard library only (runs on the system python).
"""
import argparse
import glob
import json
import math
import re
import statistics
import sys

STATUS = re.compile(
    r"\[\s*(\d+)s\] connected (\d+)/(\d+)\s+accepted (\d+)\s+calls/s (\d+)\s+errors (\d+)\s+"
    r"p50 ([\d.]+) ms\s+p99 ([\d.]+) ms"
)


def append(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def steady_rate(status_files, chargers, warmup=0):
    """Calls/s once every charger is accepted: the per-second windows of the status lines, all
    processes summed per second; the first `warmup` seconds after all were accepted, the first
    full window and the last (partial) one are dropped."""
    per_second = {}
    accepted = {}
    for path in status_files:
        try:
            lines = open(path, errors="replace").read().splitlines()
        except OSError:
            continue
        for line in lines:
            m = STATUS.search(line)
            if not m:
                continue
            t = int(m.group(1))
            per_second[t] = per_second.get(t, 0) + int(m.group(5))
            accepted[t] = accepted.get(t, 0) + int(m.group(4))
    seconds = sorted(t for t in per_second if accepted[t] >= chargers)
    if seconds:
        seconds = [t for t in seconds if t >= seconds[0] + warmup]
    if len(seconds) >= 4:
        seconds = seconds[1:-1]
    elif len(seconds) >= 2:
        seconds = seconds[:-1]
    if not seconds:
        return None, 0
    rates = [per_second[t] for t in seconds]
    return statistics.mean(rates), len(rates)


def cmd_sim(a):
    reports = [json.load(open(p)) for p in a.json]
    chargers = sum(r["chargers"] for r in reports)
    if all(r.get("measuredSeconds", r["elapsedSeconds"]) < r["elapsedSeconds"] - 0.5 for r in reports):
        # `simulate --warmup`: calls answered after the warm-up over the time since.
        rate, windows = sum(r["callsPerSecond"] for r in reports), None
    else:
        rate, windows = steady_rate(a.status, chargers, a.warmup)
    lat = reports[0]["latency"] if len(reports) == 1 else None
    errors = {}
    for r in reports:
        for k, v in r.get("errors", {}).items():
            errors[k] = errors.get(k, 0) + v
    rec = {
        "system": a.system, "scenario": a.scenario, "rep": a.rep,
        "chargers": chargers,
        "elapsed_s": max(r["elapsedSeconds"] for r in reports),
        "boot_accepted": sum(r["bootAccepted"] for r in reports),
        "peak_connected": sum(r["peakConnected"] for r in reports),
        "connect_failures": sum(r["connectFailures"] for r in reports),
        "disconnects": sum(r["disconnects"] for r in reports),
        "calls": sum(r["callsAnswered"] for r in reports),
        "calls_per_s_overall": sum(r["callsPerSecond"] for r in reports),
        "steady_calls_per_s": rate,
        "steady_windows": windows,
        "call_errors": sum(r["callErrors"] for r in reports),
        "timeouts": sum(r["timeouts"] for r in reports),
        "other_failures": sum(r["otherFailures"] for r in reports),
        "failed_calls": sum(r["timeouts"] + r["otherFailures"] for r in reports),
        "errors": errors,
    }
    if all(r.get("secondsUntilAllAccepted") is not None for r in reports):
        rec["all_accepted_s"] = max(r["secondsUntilAllAccepted"] for r in reports)
    if lat:
        rec.update({f"lat_{k}_ms": lat[k] for k in ("p50", "p90", "p99", "max", "mean")})
    else:
        rec["lat_p99_ms"] = max(r["latency"]["p99"] for r in reports)
        rec["lat_p50_ms"] = max(r["latency"]["p50"] for r in reports)
    for kv in a.extra or []:
        k, _, v = kv.partition("=")
        rec[k] = num(v)
    if a.metrics:
        served = server_handling(*a.metrics)
        if served:
            rec.update(served)
        rec.update(workflow_backlog(a.metrics[1]))
    rate = rec["steady_calls_per_s"]
    if "server_cores" in rec:
        rec["sut_cores"] = rec["server_cores"] + rec.get("pg_cores", 0) + rec.get("sim_cores", 0)
    for k in ("server", "pg", "sim"):
        if rate and isinstance(rec.get(k + "_cores"), (int, float)):
            rec[k + "_us_per_call"] = rec[k + "_cores"] * 1e6 / rate
    append(a.results, rec)
    print(json.dumps(rec, sort_keys=True))


def handling_buckets(path):
    """The cumulative buckets of chargepath_ocpp_call_duration_seconds in a /metrics scrape, all
    actions together: {upper bound in s: count}."""
    buckets = {}
    for line in open(path):
        if not line.startswith("chargepath_ocpp_call_duration_seconds_bucket{"):
            continue
        labels, _, value = line.rpartition(" ")
        le = labels.split('le="', 1)[1].split('"', 1)[0]
        bound = float("inf") if le == "+Inf" else float(le)
        buckets[bound] = buckets.get(bound, 0) + float(value)
    return buckets


def workflow_backlog(path):
    """The workflow engine's backlog in a /metrics scrape (the end of the measured window): the
    starts not taken yet and the oldest one's wait (a charging session's workflow starts that
    late), and the oldest due event's wait."""
    found = {}
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return found
    names = {
        'chargepath_workflow_backlog{queue="starts"}': "wf_starts_waiting",
        'chargepath_workflow_backlog_oldest_seconds{queue="starts"}': "wf_starts_oldest_s",
        'chargepath_workflow_backlog_oldest_seconds{queue="events"}': "wf_events_oldest_s",
    }
    for line in lines:
        key, _, value = line.rpartition(" ")
        if key in names:
            found[names[key]] = float(value)
    return found


def server_handling(before, after):
    """The server's handling time between two scrapes: the median and p99 in ms, interpolated
    within the bucket as Prometheus' histogram_quantile does, and the CALLs counted."""
    a, b = handling_buckets(before), handling_buckets(after)
    bounds = sorted(b)
    counts = [b[x] - a.get(x, 0) for x in bounds]
    if not counts or counts[-1] <= 0:
        return None
    total = counts[-1]

    def quantile(q):
        rank = q * total
        lower, below = 0.0, 0.0
        for bound, count in zip(bounds, counts):
            if count >= rank:
                if bound == float("inf"):
                    return lower * 1000
                inside = count - below
                return (lower + (bound - lower) * ((rank - below) / inside if inside else 1)) * 1000
            lower, below = bound, count
        return None

    return {"server_p50_ms": quantile(0.5), "server_p99_ms": quantile(0.99), "server_calls": total}


def num(v):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def cmd_kv(a):
    rec = {"system": a.system, "scenario": a.scenario, "rep": a.rep}
    for kv in a.pairs:
        k, _, v = kv.partition("=")
        rec[k] = num(v)
    append(a.results, rec)
    print(json.dumps(rec, sort_keys=True))


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


def cmd_pgbench(a):
    # pgbench -l: "client_id transaction_no time script_no time_epoch time_us" (time in µs).
    latencies = []
    for path in glob.glob(a.log_prefix + "*"):
        for line in open(path):
            parts = line.split()
            if len(parts) >= 3 and parts[2].isdigit():
                latencies.append(int(parts[2]) / 1000)
    latencies.sort()
    rec = {
        "system": "chargepath", "scenario": a.scenario, "rep": a.rep, "query": a.query,
        "n": len(latencies),
        "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else None,
    }
    append(a.results, rec)
    print(json.dumps(rec, sort_keys=True))


# ---------------------------------------------------------------------------------------- table

SYSTEMS = ["echo", "peer", "chargepath"]
NAMES = {"echo": "ceiling (echo)", "peer": "peer (ocpp-csms)", "chargepath": "Chargepath"}


def med(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values)


def spread(values):
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return ""
    return f" ({fmt(min(values))}–{fmt(max(values))})"


def fmt(v, digits=None):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if digits is not None:
        return f"{v:,.{digits}f}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def cell(values):
    m = med(values)
    return fmt(m) + spread(values) if m is not None else "–"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def cmd_table(a):
    records = [json.loads(l) for l in open(a.results) if l.strip()]
    meta = json.load(open(a.meta)) if a.meta else {}
    by = {}
    for r in records:
        by.setdefault((r["scenario"], r["system"]), []).append(r)

    def vals(scenario, system, key):
        return [r.get(key) for r in by.get((scenario, system), [])]

    rows = []  # (scenario, figure, {system: cell}, vs peer, vs ceiling, aim, verdict)

    def row(scenario, label, key, aim="", verdict=None, higher_is_better=True, ratios=True):
        cells = {s: cell(vals(scenario, s, key)) for s in SYSTEMS}
        cp, peer, echo = (med(vals(scenario, s, key)) for s in ("chargepath", "peer", "echo"))
        vp = ratio(cp, peer) if ratios else None
        ve = ratio(cp, echo) if ratios else None
        v = verdict(cp, peer, echo) if verdict and cp is not None else ""
        if all(c == "–" for c in cells.values()):
            return
        rows.append((scenario, label, cells, f"{vp:.2f}×" if vp else "–", f"{ve * 100:.0f}%" if ve else "–", aim, v))

    yes = lambda ok: "met" if ok else "**missed**"

    def cpu_rows(scenario):
        row(scenario, "server CPU per round trip, µs", "server_us_per_call", ratios=False)
        row(scenario, "PostgreSQL CPU per round trip, µs", "pg_us_per_call", ratios=False)
        row(scenario, "simulator CPU per round trip, µs", "sim_us_per_call", ratios=False)
        row(scenario, "CPU cores: server + PostgreSQL + simulator", "sut_cores", ratios=False)
        row(scenario, "CPU cores: other processes (noise)", "other_cores", ratios=False)
    hb = meta.get("heartbeat_chargers", "")
    row("heartbeat", f"round trips/s ({hb} chargers, steady)", "steady_calls_per_s",
        "≥5× peer, ≥60% ceiling",
        lambda cp, peer, echo: yes((peer is None or cp >= 5 * peer) and (echo is None or cp >= 0.6 * echo)))
    row("heartbeat", "p99 round trip, ms", "lat_p99_ms", ratios=False)
    row("heartbeat", "server's p99 handling time (its /metrics), ms", "server_p99_ms", ratios=False)
    row("heartbeat", "server RSS at end, MiB", "rss_mib", ratios=False)
    cpu_rows("heartbeat")
    row("sessions-max", "msg/s sustained (MeterValues saturated)", "steady_calls_per_s", "≥10,000 msg/s",
        lambda cp, peer, echo: yes(cp >= 10_000))
    row("sessions-max", "p99 round trip at saturation, ms", "lat_p99_ms", ratios=False)
    row("sessions-max", "server's p99 handling time (its /metrics), ms", "server_p99_ms", ratios=False)
    cpu_rows("sessions-max")
    row("sessions-half", "msg/s achieved (~5,000 offered)", "steady_calls_per_s", ratios=False)
    row("sessions-half", "p99 round trip, ms", "lat_p99_ms", "< 25 ms",
        lambda cp, peer, echo: yes(cp < 25), ratios=False)
    row("sessions-half", "server's median handling time (its /metrics), ms", "server_p50_ms", ratios=False)
    row("sessions-half", "server's p99 handling time (its /metrics), ms", "server_p99_ms", ratios=False)
    row("sessions-half", "round-trip timeouts + failures", "failed_calls", ratios=False)
    row("sessions-half", "workflow starts waiting at the end, all workflows (its /metrics)", "wf_starts_waiting", ratios=False)
    row("sessions-half", "oldest of them waited, s", "wf_starts_oldest_s", ratios=False)
    row("sessions-half", "other processes' CPU (noise), cores", "other_cores", ratios=False)
    row("sessions-1s", "msg/s (MeterValues every 1 s)", "steady_calls_per_s", ratios=False)
    row("sessions-1s", "p99 round trip, ms", "lat_p99_ms", ratios=False)
    row("sessions-1s", "server's p99 handling time (its /metrics), ms", "server_p99_ms", ratios=False)
    row("sessions-1s", "workflow starts waiting at the end, all workflows (its /metrics)", "wf_starts_waiting", ratios=False)
    row("sessions-1s", "oldest of them waited, s", "wf_starts_oldest_s", ratios=False)
    bs = meta.get("boot_storm_chargers", "")
    row("boot-storm", f"s until all {bs} Accepted", "all_accepted_s", "< 10 s",
        lambda cp, peer, echo: yes(cp < 10), ratios=False)
    row("boot-storm", "chargers accepted", "boot_accepted", ratios=False)
    row("boot-storm", "connect failures (retried)", "connect_failures", "0 refused",
        lambda cp, peer, echo: yes(cp == 0), ratios=False)
    row("boot-storm", "charge points recorded in DB", "recorded", ratios=False)
    idle = meta.get("idle_chargers", "")
    row("idle", f"connected chargers (of {idle})", "peak_connected", ratios=False)
    row("idle", "server RSS idle before, MiB", "rss_before_mib", ratios=False)
    row("idle", "server RSS with fleet, MiB", "rss_mib", ratios=False)
    row("idle", "KiB per connection", "kib_per_connection", "< 20 KiB",
        lambda cp, peer, echo: yes(cp < 20), ratios=False)

    out = []
    out.append("| scenario | figure | " + " | ".join(NAMES[s] for s in SYSTEMS) + " | Chargepath ÷ peer | Chargepath ÷ ceiling | aim | |")
    out.append("|---|---|" + "---:|" * len(SYSTEMS) + "---:|---:|---|---|")
    for scenario, label, cells, vp, ve, aim, verdict in rows:
        out.append(f"| {scenario} | {label} | " + " | ".join(cells[s] for s in SYSTEMS) + f" | {vp} | {ve} | {aim} | {verdict} |")

    history = [r for r in records if r["scenario"] == "history" and "query" in r]
    if history:
        out.append("")
        out.append(f"History ({meta.get('history_source', 'SQL through pgbench')}; "
                   f"{meta.get('history_transactions', '?')} transactions, {meta.get('history_meter_values', '?')} meter values; "
                   f"{meta.get('history_clients', '?')} clients; aim p99 < 50 ms):")
        out.append("")
        out.append("| query | pages | p50 ms | p99 ms | max ms | |")
        out.append("|---|---:|---:|---:|---:|---|")
        queries = []
        for r in history:
            if r["query"] not in queries:
                queries.append(r["query"])
        for q in queries:
            rs = [r for r in history if r["query"] == q]
            p99 = med([r["p99_ms"] for r in rs])
            out.append(f"| {q} | {sum(r['n'] for r in rs):,} | {cell([r['p50_ms'] for r in rs])} | "
                       f"{cell([r['p99_ms'] for r in rs])} | {fmt(max(r['max_ms'] or 0 for r in rs))} | "
                       f"{yes(p99 is not None and p99 < 50)} |")
    out.append("")
    out.append("Cells: median of the repetitions (min–max in brackets when more than one). "
               "Ratios use the medians.")
    print("\n".join(out))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sim")
    for k in ("results", "system", "scenario"):
        s.add_argument("--" + k, required=True)
    s.add_argument("--rep", type=int, default=1)
    s.add_argument("--json", nargs="+", required=True)
    s.add_argument("--status", nargs="+", required=True)
    s.add_argument("--warmup", type=float, default=0)
    s.add_argument("--extra", nargs="*")
    s.add_argument("--metrics", nargs=2, help="Chargepath's /metrics at the start and end of the measured window")
    k = sub.add_parser("kv")
    for x in ("results", "system", "scenario"):
        k.add_argument("--" + x, required=True)
    k.add_argument("--rep", type=int, default=1)
    k.add_argument("pairs", nargs="*")
    g = sub.add_parser("pgbench")
    for x in ("results", "scenario", "query", "log-prefix"):
        g.add_argument("--" + x, required=True)
    g.add_argument("--rep", type=int, default=1)
    t = sub.add_parser("table")
    t.add_argument("--results", required=True)
    t.add_argument("--meta")
    a = p.parse_args()
    {"sim": cmd_sim, "kv": cmd_kv, "pgbench": cmd_pgbench, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    main()
