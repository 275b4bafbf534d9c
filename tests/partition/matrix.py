#!/usr/bin/env python3
"""Turns the `partition-result` lines of partition_test runs into the fault
matrix of docs/reliability.md (figures summed over runs; the recovery is the
worst seen).

  tests/partition/matrix.py LOG [LOG...]
"""
import re
import sys

rows = {}
stores = []
for path in sys.argv[1:]:
    for line in open(path, errors="replace"):
        if "partition-result" not in line:
            continue
        f = dict(re.findall(r"(\w+)=(\S+)", line[line.index("partition-result"):]))
        key = (f["scenario"], f["store"])
        if f["store"] not in stores:
            stores.append(f["store"])
        r = rows.setdefault(key, {"rounds": 0, "tenures": 0, "overlaps": 0, "stale_acc": 0,
                                  "stale_rej": 0, "held": 0, "bound": int(f["bound_ms"])})
        r["rounds"] += int(f["rounds"])
        r["tenures"] += int(f["tenures"])
        r["overlaps"] += int(f["overlaps"])
        r["stale_acc"] += int(f["stale_writes_accepted"])
        r["stale_rej"] += int(f["stale_writes_rejected"])
        r["held"] = max(r["held"], int(f["held_again_after_heal_max_ms"]))

order = ["etcd", "kubernetes", "postgresql", "redis"]
stores.sort(key=lambda st: order.index(st) if st in order else len(order))
scenarios = []
for s, _ in rows:
    if s not in scenarios:
        scenarios.append(s)
print("| fault | " + " | ".join(stores) + " |")
print("|---|" + "---|" * len(stores))
for s in scenarios:
    cells = []
    for st in stores:
        r = rows.get((s, st))
        if r is None:
            cells.append("—")
            continue
        cells.append(f"{r['rounds']} rounds, {r['tenures']} tenures; overlaps **{r['overlaps']}**, "
                     f"stale writes accepted **{r['stale_acc']}** (rejected {r['stale_rej']}); "
                     f"held again ≤ {r['held']} ms (bound {r['bound']})")
    print(f"| {s} | " + " | ".join(cells) + " |")
