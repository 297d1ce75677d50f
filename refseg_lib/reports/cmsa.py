"""Report ``cmsa``: CMSA's Tables 2 (attention) and 3 (language input, fusion), the full model
against the other models, and refshape vs refshape+.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from refseg_lib.experiments import recipe_steps
from refseg_lib.reports.dmn import DMN_METRICS
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
# Report: CMSA (Tables 2 and 3, against the other models, refshape vs refshape+)
# ---------------------------------------------------------------------------------------------

# Our CMSA variant -> the row of CMSA Table 2 (attention) or Table 3 (language input, fusion)
CMSA_TABLE_2_RUNS = {
    "att_none": "No attention",
    "att_word": "Word attention",
    "att_pixel": "Pixel attention",
    "att_pair": "Word-pixel pair attention",
    "cmsa_w": "Cross-modal self-attention",
}
CMSA_TABLE_3_RUNS = {
    "cmsa_s": "CMSA-S",
    "cmsa_w": "CMSA-W",
    "ppm": "CMSA+PPM",
    "deconv": "CMSA+Deconv",
    "convlstm": "CMSA+ConvLSTM",
    "self_gated": "CMSA+Gated",
    "base": "CMSA+GF(Ours)",
}
# The full model of each paper beside the other models of the course, on one harness
CMSA_VERSUS_RUNS = {("lstm_cnn", "base"): "LSTM-CNN", ("dmn", "base"): "DMN",
                    ("cmsa", "base"): "CMSA+GF"}


def cmsa_tables(records: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Ours beside the paper, in percent, from the records of one benchmark and profile:
    ``table2`` and ``table3`` (CMSA variants, val), ``versus`` (LSTM-CNN, DMN, CMSA+GF; all
    splits) and ``styles`` (CMSA+GF on refshape vs refshape+, beside UNC vs UNC+).

    Notebook 05 shows these and the ``cmsa`` report writes them, so both say the same.
    """
    runs = with_scale(records)
    cmsa = runs[runs["model"] == "cmsa"]
    tables = {}
    for name, mapping, table, metrics in (
            ("table2", CMSA_TABLE_2_RUNS, "Table 2", ["overall_iou"]),
            ("table3", CMSA_TABLE_3_RUNS, "Table 3", list(DMN_METRICS))):
        rows = cmsa[(cmsa["split"] == "val") & cmsa["variant"].isin(mapping)
                    & ablation_runs(cmsa)]
        if rows.empty:
            continue
        rows = rows.assign(row=rows["variant"].map(mapping))
        ours = results_table(rows, index=("row",), columns=(), metric=metrics,
                             order={"row": list(mapping.values())})
        refs = {r: ref for r, d, s in zip(rows["row"], rows["dataset"], rows["style"],
                                          strict=True)
                if (ref := paper_row("CMSA", table, r, d, s))}
        scale = with_reference_rows(scale_table(rows, ("row",)), runs)
        tables[name] = beside_paper(with_reference_rows(ours, runs), refs, scale=scale)
    versus = versus_table(runs, CMSA_VERSUS_RUNS)
    if versus is not None:
        tables["versus"] = versus
    base = cmsa[(cmsa["variant"] == "base") & (cmsa["style"] != "refshape-g")]
    if base["style"].nunique() > 1:
        ours = results_table(base, index=("style",), metric="overall_iou")
        refs = {s: ref for d, s in set(zip(base["dataset"], base["style"], strict=True))
                if (ref := paper_row("CMSA", "Table 1", "Ours", d, s))}
        tables["styles"] = beside_paper(ours, refs, by="split", metric="overall_iou",
                                        scale=scale_table(base, ("style",)))
    return tables


@register_report("cmsa")
def cmsa_report(records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """CMSA Tables 2 and 3 beside ours, CMSA against LSTM-CNN and DMN, refshape vs refshape+."""
    if not (records["model"] == "cmsa").any():
        return []
    titles = {"table2": "CMSA Table 2 (attention variants, val overall IoU) beside ours",
              "table3": "CMSA Table 3 (language input and multi-level fusion, val) beside ours",
              "versus": "LSTM-CNN, DMN and CMSA+GF on one harness (overall IoU, %)",
              "styles": "CMSA+GF with and without location words: refshape vs refshape+ "
                        "beside UNC vs UNC+ (overall IoU)"}
    return write_model_tables(records, out_dir, "cmsa", ["cmsa", "dmn", "lstm_cnn", "reference"],
                              cmsa_tables, titles, _cmsa_notes, both_styles=True)


def _cmsa_notes(dataset: str, style: str, profile: str) -> list[str]:
    first, both = (recipe_steps("dmn", v, profile) for v in ("base-lowres", "base"))
    return [
        benchmark_note(dataset, style)
        + (" The styles table's refshape+ row stands beside UNC+ (RefCOCO+)."
           if dataset == "shapes" else ""),
        f"The {profile} profile's recipe: CMSA variants {recipe_steps('cmsa', profile=profile)} "
        f"steps, DMN {first} + {both - first} in two stages, "
        f"LSTM-CNN {recipe_steps('lstm_cnn', profile=profile)}; the scale columns and notes say "
        "what each run trained. Floors and ceiling: the untrained reference predictors on the "
        "same samples (notebook 00).",
        "One-level rows (Table 2, CMSA-W, CMSA-S) read the paper's res5 at stride 8; the "
        "quick profile reads its stride-8 level (CMSAConfig.single_level).",
    ]
