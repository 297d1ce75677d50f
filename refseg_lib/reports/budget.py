"""Report ``budget``: was each system's quick-profile budget long enough? Its full model beside
the same run trained twice as long (``plan.budget_jobs``, records ``<variant>-2x``).

A budget is justified when the run reaches at least ``JUSTIFIED`` (90%) of the longer run's val
score: training longer would change the number by less than a tenth. RIS is judged on its own
task's count accuracy, the others on overall IoU.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from refseg_lib.experiments import DOUBLE_SUFFIX, LEADERBOARD, LEADERBOARD_RIS
from refseg_lib.reports.claims import seeded
from refseg_lib.reports.tables import latest_records, whole_budget
from refseg_lib.reports.writing import provenance_notes, register_report, write_table

JUSTIFIED = 0.9  # the run's share of the twice-as-long run's score
_JUDGED = {**{system: (model, variant, "overall_iou")
              for system, (model, variant) in LEADERBOARD.items()},
           "RIS (every object)": (*LEADERBOARD_RIS, "count_acc")}


def budget_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per system with both runs recorded (val, ShapeRef refshape): steps and score of
    the run and of the run twice as long, the ratio and whether it justifies the budget."""
    runs = latest_records(records)
    runs = runs[(runs["split"] == "val") & (runs["style"] == "refshape")]
    rows = {}
    for system, (model, variant, metric) in _JUDGED.items():
        pair = []
        for name in (variant, seeded(variant, DOUBLE_SUFFIX)):
            found = runs[(runs["model"] == model) & (runs["variant"] == name)]
            pair.append(found.iloc[0] if len(found) else None)
        if any(p is None or metric not in p or pd.isna(p[metric]) for p in pair):
            continue
        run, longer = pair
        ratio = float(run[metric]) / float(longer[metric]) if longer[metric] else float("nan")
        rows[system] = {"metric": metric, "steps": whole_budget(runs, run)[0],
                        "val (%)": 100 * run[metric], "steps x2": whole_budget(runs, longer)[0],
                        "val x2 (%)": 100 * longer[metric], "share of x2": ratio,
                        "budget justified": bool(ratio >= JUSTIFIED)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("system")


@register_report("budget")
def budget_report(records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``budget_<benchmark>-<profile>``: each budget beside twice as long."""
    written: list[Path] = []
    for (dataset, profile), group in records.groupby(["dataset", "profile"]):
        table = budget_table(group)
        if table.empty:
            continue
        judged = {(m, seeded(v, suffix)) for m, v, _ in _JUDGED.values()
                  for suffix in ("", DOUBLE_SUFFIX)}
        keys = pd.Series(list(zip(group["model"], group["variant"], strict=True)),
                         index=group.index)
        runs = group[keys.isin(judged) & (group["split"] == "val")
                     & (group["style"] == "refshape")]
        notes = [f"Each system's full model (ShapeRef refshape, val) beside the same run trained "
                 f"twice as long (benchmarks/budget_check.py); the budget is justified when the "
                 f"run reaches {JUSTIFIED:.0%} of the longer run's score. Steps of all stages; "
                 "RIS on its own task's count accuracy, the others on overall IoU.",
                 *provenance_notes(runs)]
        written += write_table(table, f"budget_{dataset}-{profile}",
                               f"Were the budgets long enough? ({profile} profile)", notes,
                               out_dir)
    return written
