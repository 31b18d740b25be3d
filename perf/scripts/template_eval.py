#!/usr/bin/env python3
"""Grouping accuracy of shardwatch's template miner against drain3.

For each loghub system (HDFS, Apache, Zookeeper, Proxifier) this reads
`<System>_2k.log_structured.csv` (ground-truth EventId per line and the
Content column), mines the Content column with drain3 (default settings)
and with shardwatch's miner (`cargo run -p shardwatch-rules --example
templates`), and prints the grouping accuracy of both: a line counts as
correct when the set of lines grouped with it equals its ground-truth
group. One configuration serves every system.

Usage: python3 perf/scripts/template_eval.py [LOGHUB_DIR]
(default /work/shared/data/loghub). Needs `pip install drain3`.
"""

import csv
import io
import os
import subprocess
import sys
from collections import defaultdict

SYSTEMS = ["HDFS", "Apache", "Zookeeper", "Proxifier"]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def grouping_accuracy(truth, predicted):
    """Share of lines whose predicted group equals their true group."""
    true_groups = defaultdict(set)
    predicted_groups = defaultdict(set)
    for line, (t, p) in enumerate(zip(truth, predicted)):
        true_groups[t].add(line)
        predicted_groups[p].add(line)
    correct = 0
    for line, (t, p) in enumerate(zip(truth, predicted)):
        if true_groups[t] == predicted_groups[p]:
            correct += 1
    return correct / len(truth) if truth else 0.0


def run_drain3(contents):
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    config = TemplateMinerConfig()  # library defaults, no masking
    miner = TemplateMiner(config=config)
    ids = []
    for content in contents:
        result = miner.add_log_message(content)
        ids.append(result["cluster_id"])
    return ids


def run_ours(structured_path):
    output = subprocess.run(
        ["cargo", "run", "-q", "--release", "-p", "shardwatch-rules",
         "--example", "templates", "--", structured_path],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout
    rows = list(csv.DictReader(io.StringIO(output)))
    return {row["LineId"]: row["EventId"] for row in rows}


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/loghub"
    print(f"{'system':<12}{'lines':>7}{'events':>8}{'drain3':>9}{'shardwatch':>12}")
    totals = {"drain3": [], "shardwatch": []}
    for system in SYSTEMS:
        path = os.path.join(root, system, f"{system}_2k.log_structured.csv")
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        truth = [row["EventId"] for row in rows]
        contents = [row["Content"] for row in rows]
        drain = grouping_accuracy(truth, run_drain3(contents))
        ours_by_line = run_ours(path)
        ours = grouping_accuracy(truth, [ours_by_line.get(row["LineId"], "?") for row in rows])
        totals["drain3"].append(drain)
        totals["shardwatch"].append(ours)
        print(f"{system:<12}{len(rows):>7}{len(set(truth)):>8}{drain:>9.4f}{ours:>12.4f}")
    mean = {k: sum(v) / len(v) for k, v in totals.items()}
    print(f"{'average':<12}{'':>7}{'':>8}{mean['drain3']:>9.4f}{mean['shardwatch']:>12.4f}")


if __name__ == "__main__":
    main()
