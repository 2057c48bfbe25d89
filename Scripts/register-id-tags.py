#!/usr/bin/env python3
"""Registers the id tags of a simulated fleet through Chargepath's operator API.

Chargepath authorizes only id tags an operator registered. A fleet of CHARGERS split over
simulator processes of at most PER chargers each has the ids "<PREFIX><process>-<n>" (process
from 1, n zero-padded to that process's count), and each charger's tag is "TAG-<id>" cut to 20
characters.

usage: register-id-tags.py API_PORT TOKEN PREFIX CHARGERS [PER]
"""
import http.client
import sys

port, token, prefix, chargers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
per = int(sys.argv[5]) if len(sys.argv) > 5 else max(chargers, 1)
procs = (chargers + per - 1) // per
left = chargers
conn = http.client.HTTPConnection("127.0.0.1", int(port))
for p in range(1, procs + 1):
    n = left // (procs - p + 1)
    left -= n
    width = len(str(n))
    for i in range(1, n + 1):
        tag = ("TAG-" + f"{prefix}{p}-" + str(i).zfill(width))[:20]
        conn.request("PUT", "/api/v1/id-tags/" + tag, body='{"status":"Accepted"}',
                     headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status not in (200, 201):
            sys.exit(f"PUT id tag {tag}: HTTP {r.status}")
