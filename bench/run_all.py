"""Run every benchmark in bench/ and refresh the figures table in bench/README.md."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
README = BENCH / "README.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"

# Figure → goal, as the issues state them.
GOALS = {
    "import_throughput": {
        "rows_per_s_tabular": "≥ 5,000", "rows_per_s_text": "≥ 5,000", "peak_rss_mb": "≤ 300",
    },
    "queue_latency": {
        "scoring_items_per_s": "≥ 200,000", "scoring_speedup_2_workers": "≥ 1.5", "cycles_per_s": "≥ 100",
        "paced_next_p99_ms": "≤ 30", "paced_submit_p99_ms": "≤ 50", "duplicates": "0",
    },
    "freshness": {"total_s": "≤ 15"},
    "drift_false_alarms": {"false_alarm_50": "≤ 0.05", "false_alarm_100": "≤ 0.05", "false_alarm_500": "≤ 0.05"},
    "gate_looks": {"better_false_promotion": "≤ 0.05", "first_model_false_promotion": "≤ 0.05"},
    "label_efficiency": {
        "n99": "≤ 220", "live_n99": "≤ 260", "live_final_accuracy": "≥ 0.99 × full_pool_accuracy",
        "median_first_promotion": "≤ 40", "noisy_live_max_drop": "≤ 0.02",
    },
    "load": {"errors": "0", "lost": "0", "duplicated": "0"},
    "predict_latency": {"single_p99_ms": "≤ 20", "batch_items_per_s": "≥ 20,000"},
    "browse_latency": {"p95_ms": "≤ 300", "p99_ms": "≤ 600"},
    "export_throughput": {
        "jsonl_rows_per_s": "≥ 100,000", "csv_rows_per_s": "≥ 100,000", "first_byte_s": "≤ 1", "peak_rss_mb": "≤ 250",
    },
}


def scripts() -> list[Path]:
    return sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_") and p.name != "run_all.py")


def table() -> str:
    lines = ["| benchmark | figure | value | goal | date | machine | command |", "|---|---|---|---|---|---|---|"]
    for path in sorted((BENCH / "results").glob("*.json")):
        data = json.loads(path.read_text())
        meta = (data.get("date", ""), data.get("machine", ""), f"`{data.get('command', '')}`")
        for key, value in data.items():
            if key in ("date", "machine", "command"):
                continue
            goal = GOALS.get(path.stem, {}).get(key, "")
            lines.append(f"| {path.stem} | {key} | {value} | {goal} | {meta[0]} | {meta[1]} | {meta[2]} |")
    return "\n".join(lines)


def refresh_readme() -> None:
    text = README.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    README.write_text(f"{head}{START}\n{table()}\n{END}{tail}")


def main() -> None:
    extra = sys.argv[1:]
    failed = []
    for script in scripts():
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script), *extra]).returncode != 0:
            failed.append(script.name)
    refresh_readme()
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
