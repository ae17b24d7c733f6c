"""Where the loop's time goes, read back from a Dagster instance after `nexus demo` (or the daemon) ran on it.

    DAGSTER_HOME=.nexus/dagster .venv/bin/python -m benchmarks.loop_profile [--since-minutes 60]

Dagster records every run, step and sensor tick with its times; this sums them: runs by job (wall time and how
much of it is steps' own compute), steps by asset, and sensor ticks by sensor. What a run spends outside its
steps is Dagster's fixed cost (run creation, event storage, resource setup); what a day spends outside runs and
ticks is the replay's own orchestration.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import dagster as dg
import pandas as pd
from dagster._core.scheduler.instigation import InstigatorType


def profile(instance: dg.DagsterInstance, since: float) -> dict[str, pd.DataFrame]:
    """Runs by job, steps by key and sensor ticks by sensor, started after `since` (a Unix time)."""
    runs, steps = [], []
    for record in instance.get_run_records(dg.RunsFilter(created_after=pd.Timestamp(since, unit="s"))):
        stats = instance.get_run_stats(record.dagster_run.run_id)
        if not (stats.start_time and stats.end_time):
            continue
        step_stats = instance.get_run_step_stats(record.dagster_run.run_id)
        compute = sum((s.end_time or s.start_time) - s.start_time for s in step_stats if s.start_time)
        runs.append(
            {
                "job": record.dagster_run.job_name,
                "wall_s": stats.end_time - stats.start_time,
                "steps_s": compute,
                "events": stats.steps_succeeded + stats.steps_failed + stats.materializations,
            }
        )
        done = [s for s in step_stats if s.start_time and s.end_time]
        steps += [{"step": s.step_key, "seconds": s.end_time - s.start_time} for s in done]
    ticks = defaultdict(list)
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since, limit=100_000):
            if tick.end_timestamp:
                ticks[state.instigator_name].append(tick.end_timestamp - tick.timestamp)
    run_frame = pd.DataFrame(runs, columns=["job", "wall_s", "steps_s", "events"])
    by_job = run_frame.groupby("job").agg(runs=("wall_s", "size"), wall_s=("wall_s", "sum"), steps_s=("steps_s", "sum"))
    by_job["outside_steps_per_run_s"] = (by_job["wall_s"] - by_job["steps_s"]) / by_job["runs"]
    step_frame = pd.DataFrame(steps, columns=["step", "seconds"])
    by_step = step_frame.groupby("step")["seconds"].agg(["size", "sum", "mean"]).rename(columns={"size": "runs"})
    by_sensor = pd.DataFrame(
        [{"sensor": name, "ticks": len(t), "sum_s": sum(t), "mean_s": sum(t) / len(t)} for name, t in ticks.items()],
        columns=["sensor", "ticks", "sum_s", "mean_s"],
    ).set_index("sensor")
    return {
        "runs by job": by_job.sort_values("wall_s", ascending=False),
        "steps": by_step.sort_values("sum", ascending=False),
        "sensor ticks": by_sensor.sort_values("sum_s", ascending=False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since-minutes", type=float, default=120, help="runs and ticks of the last N minutes")
    args = parser.parse_args()
    with dg.DagsterInstance.get() as instance:
        for title, table in profile(instance, time.time() - 60 * args.since_minutes).items():
            print(f"\n### {title}\n\n{table.round(2).to_markdown()}")


if __name__ == "__main__":
    main()
