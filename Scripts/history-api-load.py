#!/usr/bin/env python3
"""The history benchmark through the HTTP API: what an operator's dashboard asks for.

  history-api-load.py --port P --token T --query Q --seconds S --clients C --log-prefix PREFIX
                      --transactions N --first-transaction ID

Each client keeps one HTTP/1.1 connection (keep-alive) and asks for pages of 50 in a loop for
S seconds; every request's latency (sending the request to the last byte of the body) is a line
"client request latency_us" in PREFIX.<client>, the format `benchmark_report.py pgbench` reads.
Every answer must be 200 with the JSON the API documents; anything else stops the run with a
non-zero exit, so a failing API never passes as fast.

Queries, over the data benchmark.sh loads (1,000 charge points H-0001..H-1000, id tags
TAG-1..TAG-5000, a transaction every 5 minutes from 2026-01-01):
  api-by-charge-point       a charge point's newest transactions; half the time the next page too
  api-by-id-tag-and-period  an id tag's transactions in a 90-day period
  api-by-period-pages       a 30-day period, then 0-20 further pages through `nextCursor`
  api-transaction-detail    one transaction with its meter values
"""
import argparse
import datetime
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse

START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def iso(day):
    return (START + datetime.timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Client:
    def __init__(self, port, token):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.latencies_us = []

    def get(self, path, params=None):
        if params:
            path += "?" + urllib.parse.urlencode(params)
        started = time.perf_counter()
        self.connection.request("GET", path, headers=self.headers)
        response = self.connection.getresponse()
        body = response.read()
        self.latencies_us.append(int((time.perf_counter() - started) * 1e6))
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
        return json.loads(body)


def transactions_page(client, params):
    page = client.get("/api/v1/transactions", params)
    if not isinstance(page.get("transactions"), list) or "nextCursor" not in page:
        raise RuntimeError(f"unexpected page for {params}: {str(page)[:300]}")
    return page


def one_round(client, query, rng, a):
    last_day = a.transactions // 288
    if query == "api-by-charge-point":
        params = {"chargePointId": f"H-{rng.randint(1, 1000):04d}", "limit": 50}
        page = transactions_page(client, params)
        if rng.random() < 0.5 and page["nextCursor"]:
            transactions_page(client, {**params, "cursor": page["nextCursor"]})
    elif query == "api-by-id-tag-and-period":
        day = rng.randint(0, last_day)
        transactions_page(client, {"idTag": f"TAG-{rng.randint(1, 5000)}", "from": iso(day - 90), "to": iso(day), "limit": 50})
    elif query == "api-by-period-pages":
        day = rng.randint(0, last_day)
        params = {"from": iso(day - 30), "to": iso(day), "limit": 50}
        page = transactions_page(client, params)
        for _ in range(rng.randint(0, 20)):
            if not page["nextCursor"]:
                break
            page = transactions_page(client, {**params, "cursor": page["nextCursor"]})
    elif query == "api-transaction-detail":
        tx = a.first_transaction + rng.randint(0, a.transactions - 1)
        detail = client.get(f"/api/v1/transactions/{tx}")
        if not isinstance(detail.get("meterValues"), list):
            raise RuntimeError(f"transaction {tx} came without meterValues: {str(detail)[:300]}")
    else:
        raise SystemExit(f"unknown query {query}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--query", required=True)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--transactions", type=int, required=True)
    p.add_argument("--first-transaction", type=int, required=True)
    p.add_argument("--log-prefix", required=True)
    a = p.parse_args()

    clients = [Client(a.port, a.token) for _ in range(a.clients)]
    failures = []
    deadline = time.monotonic() + a.seconds

    def work(index):
        rng = random.Random(index)
        try:
            while time.monotonic() < deadline:
                one_round(clients[index], a.query, rng, a)
        except Exception as error:  # noqa: BLE001 - reported below, the run fails
            failures.append(f"client {index}: {error}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, c in enumerate(clients):
        with open(f"{a.log_prefix}.{i}", "w") as f:
            for n, us in enumerate(c.latencies_us):
                f.write(f"{i} {n} {us}\n")
    total = sum(len(c.latencies_us) for c in clients)
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    if total == 0:
        sys.exit(f"{a.query}: no request completed in {a.seconds} s")
    print(f"{a.query}: {total} requests")


if __name__ == "__main__":
    main()
