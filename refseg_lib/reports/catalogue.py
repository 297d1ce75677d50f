"""Report ``runs``: every run record in one table per benchmark family and profile, with its scale,
so that every record of every split appears in some table, also those no paper's table reads
(other splits, first stages, second seeds, runs twice as long, runs of other benchmarks) and
those whose model, dataset, split or profile the library does not know, which its notes name
(``writing.unknown_notes``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from refseg_lib.reports.tables import (
    benchmark_label,
    results_table,
    scale_cells,
    scale_table,
    with_scale,
)
from refseg_lib.reports.writing import (
    provenance_notes,
    register_report,
    unknown_notes,
    write_table,
)

# The primary metrics of the catalogue, where a record has them: the masks' overall and mean
# IoU; RIS's count accuracy; MCN's REC box accuracy.
CATALOGUE_METRICS = ("overall_iou", "mean_iou", "count_acc", "Acc@0.5")
_INDEX = ("model", "variant", "benchmark", "split")


def runs_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per record (the newest of each run and split): model, variant, benchmark, split,
    its scale (n, steps, the recipe's steps, short) and ``CATALOGUE_METRICS`` as fractions."""
    runs = with_scale(records)
    runs = runs.assign(benchmark=[benchmark_label(d, s) for d, s in
                                  zip(runs["dataset"], runs["style"], strict=True)])
    metrics = [m for m in CATALOGUE_METRICS if m in runs]
    ours = results_table(runs, index=_INDEX, columns=(), metric=metrics)
    scale = scale_cells(scale_table(runs, _INDEX).reindex(ours.index), recipe=True)
    return pd.concat([scale, ours], axis=1)


@register_report("runs")
def runs_report(records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``runs_<dataset>-<profile>``: the catalogue of every record, with a note on those the
    library does not know."""
    written: list[Path] = []
    for (dataset, profile), group in records.groupby(["dataset", "profile"]):
        notes = [f"Every run record of {dataset} in the {profile} profile, one row per run and "
                 "split, also those no other table shows (other splits, first stages, second "
                 "seeds, runs twice as long).",
                 "n: expressions evaluated; steps: training steps of all stages; recipe steps: "
                 "what the course's recipe gives the run (experiments.recipe_steps); short: "
                 "trained below it. Metrics as fractions: overall_iou and mean_iou at threshold "
                 "0.5; count_acc (RIS's instance count) and Acc@0.5 (MCN's box accuracy) where "
                 "recorded.",
                 *unknown_notes(group), *provenance_notes(group)]
        written += write_table(runs_table(group), f"runs_{dataset}-{profile}",
                               f"Every run record: {dataset}, {profile} profile", notes,
                               out_dir, floatfmt=".3f")
    return written
