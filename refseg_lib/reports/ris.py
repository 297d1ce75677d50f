"""Report ``ris``: recurrent instance segmentation (the curriculum with each seed, the splits,
the sentence-conditioned variant).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from refseg_lib.experiments import recipe_steps
from refseg_lib.reports.tables import benchmark_name, latest_records, results_table
from refseg_lib.reports.writing import register_report, write_model_tables

# ---------------------------------------------------------------------------------------------
# Report: recurrent instance segmentation (curriculum, splits, the conditioned variant)
# ---------------------------------------------------------------------------------------------

# Our RIS run (task + curriculum) -> its row; records of ``run_ris``
RIS_RUNS = {"all": "n + 2 steps from the start", "all-curriculum": "curriculum: 2, then n + 2",
            "plural-curriculum": "'all the <property>' (conditioned), curriculum"}
RIS_METRICS = ("count_acc", "abs_dic", "sbd", "best_overlap", "ap@0.5", "overall_iou")
RIS_FRACTIONS = ("count_acc", "sbd", "best_overlap", "ap@0.5", "overall_iou")  # shown in %


def _ris_percent(table: pd.DataFrame) -> pd.DataFrame:
    """Fractions to percent in the columns whose (outer) metric is one; |DiC| stays a count."""
    metric = table.columns.get_level_values(0)
    return table.mul([100.0 if m in RIS_FRACTIONS else 1.0 for m in metric], axis=1)


def ris_tables(records: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Recurrent instance segmentation on ShapeRef (percent, |DiC| in objects): ``curriculum``
    (val, both arms with each seed recorded), ``splits`` (the curriculum run on every split),
    ``plural`` (the sentence-conditioned variant beside the unconditioned run, val). Notebook
    08 shows these and the ``ris`` report writes them."""
    runs = latest_records(records)
    ris = runs[runs["model"] == "ris"].astype({"variant": str})
    parts = ris["variant"].str.extract(r"^(?P<base>.+?)(?:-seed(?P<seed>\d+))?$")
    ris = ris.assign(base=parts["base"], row=parts["base"].map(RIS_RUNS),
                     seed="seed " + parts["seed"].fillna("0"))
    ris = ris[ris["row"].notna()]
    metrics = [m for m in RIS_METRICS if m in ris]
    order = {"row": list(RIS_RUNS.values())}
    tables = {}
    arms = ris[(ris["split"] == "val") & ris["base"].isin(["all", "all-curriculum"])]
    if not arms.empty:
        tables["curriculum"] = _ris_percent(results_table(
            arms, index=("row", "seed"), columns=(), metric=metrics, order=order))
    final = ris[(ris["base"] == "all-curriculum") & (ris["seed"] == "seed 0")]
    if not final.empty:
        tables["splits"] = _ris_percent(results_table(final, index=("row",), columns=("split",),
                                                      metric=metrics, order=order))
    plural = ris[(ris["split"] == "val") & (ris["seed"] == "seed 0")
                 & ris["base"].isin(["all-curriculum", "plural-curriculum"])]
    if (plural["variant"] == "plural-curriculum").any():
        tables["plural"] = _ris_percent(results_table(plural, index=("row",), columns=(),
                                                      metric=metrics, order=order))
    return tables


@register_report("ris")
def ris_report(records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Recurrent instance segmentation: curriculum against none, splits, conditioned variant."""
    if not (records["model"] == "ris").any():
        return []
    titles = {"curriculum": "RIS: curriculum against n + 2 steps from the start (val)",
              "splits": "RIS with the curriculum on every split",
              "plural": "RIS conditioned on 'all the <property>' beside all objects (val)"}
    return write_model_tables(records, out_dir, "ris", ["ris"], ris_tables, titles, _ris_notes)


def _ris_notes(dataset: str, style: str, profile: str) -> list[str]:
    return [
        "Ours: ShapeRef scenes (3-6 objects), every object a class-agnostic instance "
        "(data.instances.InstanceTask); 'plural': the objects an expression such as 'all "
        "the red shapes' selects, our extension. Percent, except |DiC| (objects)."
        if dataset == "shapes" else
        f"Ours: {benchmark_name(dataset, style)}, every annotated object of an image a "
        "class-agnostic instance (data.instances.InstanceTask). Percent, except |DiC| "
        "(objects).",
        "count_acc: emitted count equals the number of objects (stopping at the first "
        "confidence < 0.5); sbd: symmetric best Dice; best_overlap: mean best IoU of each "
        "object; ap@0.5: AP^r at IoU 0.5 over every step ranked by confidence; "
        "overall_iou: the union of the emitted instances against the union of the objects.",
        "The paper's own tables (CVPPP leaves, Pascal VOC people) could not be read here "
        "(notebook 08): no paper column.",
        f"The {profile} profile's recipe trains each run "
        f"{recipe_steps('ris', 'all', profile)} steps (experiments.recipe_steps); with the "
        f"curriculum, {recipe_steps('ris', 'all-stage1', profile)} of them unroll two steps "
        "per image. The scale notes say what each run trained.",
    ]
