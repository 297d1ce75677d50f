"""Report ``cmsa``: CMSA's Tables 2 (attention) and 3 (language input, fusion), the full model
against the other models, and refshape vs refshape+.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from refseg_lib.experiments import CMSA_STEPS, DMN_STAGE_STEPS, PROFILES
from refseg_lib.paper_numbers import (
    UNC,
    UNC_PLUS,
)
from refseg_lib.reports.dmn import DMN_METRICS
from refseg_lib.reports.tables import (
    PaperRef,
    beside_paper,
    latest_records,
    results_table,
    versus_table,
    with_reference_rows,
)
from refseg_lib.reports.writing import register_report, write_model_tables

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
_CMSA_STYLE_DATASET = {"refshape": UNC, "refshape+": UNC_PLUS}


def cmsa_tables(records: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Ours beside the paper, in percent, from the records of one benchmark and profile:
    ``table2`` and ``table3`` (CMSA variants, val), ``versus`` (LSTM-CNN, DMN, CMSA+GF; all
    splits) and ``styles`` (CMSA+GF on refshape vs refshape+, beside UNC vs UNC+).

    Notebook 05 shows these and the ``cmsa`` report writes them, so both say the same.
    """
    runs = latest_records(records)
    cmsa = runs[runs["model"] == "cmsa"]
    tables = {}
    for name, mapping, table, metrics in (
            ("table2", CMSA_TABLE_2_RUNS, "Table 2", ["overall_iou"]),
            ("table3", CMSA_TABLE_3_RUNS, "Table 3", list(DMN_METRICS))):
        rows = cmsa[(cmsa["split"] == "val") & cmsa["variant"].isin(mapping)
                    & cmsa["style"].isin(["", "refshape"])]
        if rows.empty:
            continue
        ours = results_table(rows.assign(row=rows["variant"].map(mapping)), index=("row",),
                             columns=(), metric=metrics, order={"row": list(mapping.values())})
        refs = {r: PaperRef("CMSA", table, r) for r in ours.index}
        tables[name] = beside_paper(with_reference_rows(ours, runs), refs)
    versus = versus_table(runs, CMSA_VERSUS_RUNS)
    if versus is not None:
        tables["versus"] = versus
    base = cmsa[(cmsa["variant"] == "base") & (cmsa["style"] != "refshape-g")]
    if base["style"].nunique() > 1:
        ours = results_table(base, index=("style",), metric="overall_iou")
        refs = {s: PaperRef("CMSA", "Table 1", "Ours", _CMSA_STYLE_DATASET[s])
                for s in ours.index if s in _CMSA_STYLE_DATASET}
        tables["styles"] = beside_paper(ours, refs, by="split", metric="overall_iou")
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
    notes = ["Ours: ShapeRef (refshape unless the row says otherwise), percent; the paper's: UNC "
             "(RefCOCO) val unless the source says otherwise. ShapeRef is an analogue of the "
             "benchmark, not the same test: compare orderings, not values.",
             f"Quick profile: CMSA variants train {CMSA_STEPS['quick']} steps "
             f"(experiments.CMSA_STEPS), DMN {' + '.join(map(str, DMN_STAGE_STEPS['quick']))} "
             f"in two stages, LSTM-CNN {PROFILES['quick'].train.max_steps}. Floors and "
             "ceiling: the untrained reference predictors on the same samples (notebook 00).",
             "One-level rows (Table 2, CMSA-W, CMSA-S) read the paper's res5 at stride 8; the "
             "quick profile reads its stride-8 level (CMSAConfig.single_level)."]
    return write_model_tables(records, out_dir, "cmsa", ["cmsa", "dmn", "lstm_cnn", "reference"],
                               cmsa_tables, titles, notes, both_styles=True)
