"""Report ``mcn``: MCN's Tables 1-3 (post-processing, components, REC beside RES) and the full model
against the other models.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from refseg_lib.experiments import get_profile, recipe_steps
from refseg_lib.reports.tables import (
    ablation_runs,
    beside_paper,
    paper_row,
    results_table,
    scale_table,
    versus_table,
    with_reference_rows,
    with_scale,
)
from refseg_lib.reports.writing import benchmark_note, register_report, write_model_tables

# ---------------------------------------------------------------------------------------------
# Report: MCN (Tables 1-3, REC beside RES, against the other models)
# ---------------------------------------------------------------------------------------------

# Our MCN records (variant, with the post-processing suffix of run_mcn) -> the paper's rows
MCN_TABLE_1_RUNS = {"cem": "w.o. post-processing", "cem+roi": "RoI Crop [10, 30]",
                    "cem+soft_nls": "Soft-NLS (ours)", "cem+asnls": "ASNLS (ours)"}
MCN_TABLE_2_RUNS = {"base": "MCN (Base)", "text_att": "+TextAtt", "garan": "+GARAN",
                    "cem": "+CEM", "cem+asnls": "+ASNLS", "cem_eq9": "+CEM (eq. 9 as printed)",
                    "cem_eq9+asnls": "+ASNLS (eq. 9 as printed)"}
MCN_TABLE_3_RUNS = {
    "single_rec_13": "Single_REC (scale=13^2)", "single_rec_52": "Single_REC (scale=52^2)",
    "single_res_13": "Single_RES (scale=13^2)", "single_res_52": "Single_RES (scale=52^2)",
    "ohd_13": "OnlyHeadDifferent (scale=13^2)", "ohd_52": "OnlyHeadDifferent (scale=52^2)",
    "obs": "OnlyBackboneShared (REC_scale=13^2, RES_scale=52^2)", "base": "MCN (Base)"}
MCN_THRESHOLD_SUFFIX = "@0.35"  # MCN binarises at 0.35 (postprocess.MCN_THRESHOLD)
MCN_VERSUS_RUNS = {("lstm_cnn", "base"): "LSTM-CNN", ("dmn", "base"): "DMN",
                   ("cmsa", "base"): "CMSA+GF", ("mcn", "cem"): "MCN",
                   ("mcn", "cem+asnls"): "MCN+ASNLS"}


def mcn_tables(records: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Ours beside MCN's Tables 1-3 (val, percent; masks binarised at 0.35 as MCN does) and
    ``versus``: the course's models on one harness (overall IoU at 0.5, all splits).

    Table 3's Single_REC rows have no RES number (their masks are their boxes filled in), as
    in the paper. Notebook 06b shows these and the ``mcn`` report writes them."""
    runs = with_scale(records)
    mcn = runs[(runs["model"] == "mcn") & (runs["split"] == "val") & ablation_runs(runs)]
    at = MCN_THRESHOLD_SUFFIX
    tables = {}
    for name, mapping, table, metrics in (
            ("table1", MCN_TABLE_1_RUNS, "Table 1",
             [f"mean_iou{at}", f"overall_iou{at}", *(f"Pr@{x}{at}" for x in
                                                    ("0.5", "0.6", "0.7", "0.8", "0.9")),
              f"IE{at}"]),
            ("table2", MCN_TABLE_2_RUNS, "Table 2", ["Acc@0.5", f"mean_iou{at}", f"IE{at}"]),
            ("table3", MCN_TABLE_3_RUNS, "Table 3", ["Acc@0.5", f"mean_iou{at}"])):
        rows = mcn[mcn["variant"].isin(mapping)]
        if rows.empty:
            continue
        present = [m for m in metrics if m in rows]
        rows = rows.assign(row=rows["variant"].map(mapping))
        ours = results_table(rows, index=("row",), columns=(), metric=present,
                             order={"row": list(mapping.values())})
        if name == "table3" and f"mean_iou{at}" in ours:
            ours.loc[ours.index.str.startswith("Single_REC"), f"mean_iou{at}"] = math.nan
        refs = {r: ref for r, d, s in zip(rows["row"], rows["dataset"], rows["style"],
                                          strict=True)
                if "as printed" not in r and (ref := paper_row("MCN", table, r, d, s))}
        scale = with_reference_rows(scale_table(rows, ("row",)), runs)
        tables[name] = beside_paper(with_reference_rows(ours, runs), refs, scale=scale)
    versus = versus_table(runs, MCN_VERSUS_RUNS) if not mcn.empty else None
    if versus is not None:
        tables["versus"] = versus
    return tables


@register_report("mcn")
def mcn_report(records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """MCN Tables 1-3 beside ours and MCN against the other models of the course."""
    if not (records["model"] == "mcn").any():
        return []
    titles = {"table1": "MCN Table 1 (post-processing the mask with the box, val) beside ours",
              "table2": "MCN Table 2 (ablation ladder, val: REC Acc@0.5, RES mean IoU, IE) "
                        "beside ours",
              "table3": "MCN Table 3 (network structures, val: REC Acc@0.5, RES mean IoU) "
                        "beside ours",
              "versus": "LSTM-CNN, DMN, CMSA+GF and MCN on one harness (overall IoU at 0.5, %)"}
    return write_model_tables(records, out_dir, "mcn",
                              ["mcn", "cmsa", "dmn", "lstm_cnn", "reference"], mcn_tables,
                              titles, _mcn_notes)


def _mcn_notes(dataset: str, style: str, profile: str) -> list[str]:
    size = get_profile(profile, "mcn").image_size
    low, high = -(-size // 32), -(-size // 8)  # the maps' sides, rounded up
    return [
        benchmark_note(dataset, style) + " RES numbers are mean IoU with masks binarised at "
        "0.35, MCN's protocol; REC is box Acc@0.5 (IoU > 0.5). Scale: n expressions "
        "evaluated, training steps, and 'short' where a run trained below its recipe's budget.",
        f"The {profile} profile's recipe trains each MCN run "
        f"{recipe_steps('mcn', profile=profile)} steps (experiments.recipe_steps; the scale "
        f"columns and notes say what each run trained); '13^2' is the stride-32 map ({low}x{low} "
        f"at {size} px), '52^2' the stride-8 one ({high}x{high}).",
        "Rows +X (roi, soft_nls, asnls) are the +CEM run evaluated with that "
        "post-processing. +CEM is the official code's form (the log of the summed energy, "
        "which couples the two maps); the rows 'eq. 9 as printed' train the paper's printed "
        "eq. 9 and have no paper counterpart.",
    ]
