#!/usr/bin/env python3
"""Markdown table of bench/all.sh results: bench/table.py OUTROOT [MODE ...]."""
import json
import os
import sys

ROWS = [
    ("a.json", "(a) single, closed 32, 30 s"),
    ("b.json", "(b) fanout 1→10, closed 32, 10 s"),
    ("c-baseline.json", "(c) fanout8 100 msg/s 30 s (baseline)"),
    ("c.json", "(c) mixed 100 msg/s 30 s"),
    ("d-200.json", "(d) 200 msg/s 30 s"),
    ("d-1000.json", "(d) 1,000 msg/s 30 s"),
]


def row(path, label, mode):
    d = json.load(open(path))
    api, e2e, cpu = d["api_latency"], d["end_to_end_latency"], d["cpu"] or {}
    fast = d["end_to_end_by_behaviour"].get("fast", e2e)
    machine = (cpu.get("machine") or {}).get("ms_per_message")
    rss = d["server_memory"]["peak_rss_sum_kb"] / 1024 if d["server_memory"] else 0
    cells = [
        label,
        mode,
        f"{d['accept_throughput_per_sec']:.0f}",
        f"{d['deliveries_per_sec']:.0f}",
        f"{api['p50_ms']:.1f} / {api['p99_ms']:.1f}",
        f"{e2e['p50_ms']:.1f} / {e2e['p99_ms']:.1f}",
        f"{fast['p99_ms']:.1f}",
        f"{d['missing_deliveries']} / {d['duplicates']}",
        f"{cpu.get('total_ms_per_message', 0):.2f}",
        f"{machine:.2f}" if machine is not None else "",
        f"{rss:.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


root = sys.argv[1]
modes = sys.argv[2:] or ["embedded", "services"]
print("| scenario | topology | accepted msg/s | deliveries/s | API p50 / p99 ms "
      "| e2e p50 / p99 ms | fast e2e p99 ms | missing / dup "
      "| CPU ms/msg (Herald + PG + RabbitMQ) | machine ms/msg | RSS MB |")
print("|---" * 11 + "|")
for name, label in ROWS:
    for mode in modes:
        path = os.path.join(root, mode, name)
        if os.path.exists(path):
            print(row(path, label, mode))
