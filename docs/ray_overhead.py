"""What Ray adds per run: the measurement behind README's "More than one machine" table.

    python docs/ray_overhead.py ADDRESS OUT [RUNS]

joins the Ray cluster at ADDRESS (e.g. one started with ``ray start --head --num-cpus 8``)
and measures, with the executor ``convdrop compare --executor ray`` uses:

1. the scheduler's cost per task: 400 empty tasks of one CPU each, submitted at once
   (wall time / tasks, after 20 that start the workers);
2. RUNS (default 8) tiny runs (synthetic data, one epoch, one CPU each) into OUT: the wall
   time, each run's own time, and how many were in flight at once (from each run's end,
   the mtime of its result.json, and its length).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from convdrop.lab.runs.ray_executor import connect, import_ray, on_loopback
from convdrop.lab.runs.runner import compare
from convdrop.lab.spec.experiment import build_spec

EMPTY_TASKS = 400


def _nothing() -> None:
    return None


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) spans that overlap at one moment."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = best = 0
    for _, step in events:
        running += step
        best = max(best, running)
    return best


def empty_tasks(ray) -> dict:
    task = ray.remote(num_cpus=1)(_nothing)
    ray.get([task.remote() for _ in range(20)])  # warm the workers
    started = time.perf_counter()
    ray.get([task.remote() for _ in range(EMPTY_TASKS)])
    wall = time.perf_counter() - started
    return {"tasks": EMPTY_TASKS, "wall_s": round(wall, 2),
            "ms_per_task": round(1000 * wall / EMPTY_TASKS, 2)}


def tiny_runs(address: str, out: Path, runs: int) -> dict:
    spec = build_spec(overrides={"data": "synthetic", "train_size": 32, "batch_size": 16,
                                 "epochs": 1, "seeds": runs, "methods": ["control"],
                                 "model_options": {"width": 4}})
    with connect(address, spec) as executor:
        started = time.perf_counter()
        compare(spec, out, show_progress=False, executor=executor)
        wall = time.perf_counter() - started
        spans = []
        for result_file in sorted(out.glob("runs/control/seed*/result.json")):
            end = result_file.stat().st_mtime
            spans.append((end - json.loads(result_file.read_text())["seconds"], end))
        return {"cluster": executor.describe(), "runs": runs, "wall_s": round(wall, 2),
                "mean_run_s": round(sum(e - s for s, e in spans) / len(spans), 2),
                "in_flight": most_at_once(spans)}


def main() -> None:
    address, out = sys.argv[1], Path(sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    report = tiny_runs(address, out, runs)
    ray = import_ray(loopback=on_loopback(address))
    ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    try:
        report["empty_tasks"] = empty_tasks(ray)
    finally:
        ray.shutdown()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
