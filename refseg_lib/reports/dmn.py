"""Report ``dmn``: DMN's Table 1 ablations and Fig. 7's SRU vs LSTM at low resolution, on ShapeRef.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from refseg_lib.paper_numbers import UNC
from refseg_lib.reports.tables import (
    ablation_runs,
    benchmark_label,
    benchmark_name,
    beside_paper,
    paper_dataset,
    paper_row,
    results_table,
    scale_table,
    with_reference_rows,
)
from refseg_lib.reports.writing import (
    bar_plot,
    provenance_notes,
    register_report,
    save_figure,
    write_table,
)

# ---------------------------------------------------------------------------------------------
# Report: DMN (Table 1's ablations and Fig. 7's SRU vs LSTM, on ShapeRef)
# ---------------------------------------------------------------------------------------------

DMN_METRICS = ("Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9", "overall_iou")
# Our run (model, variant) -> DMN Table 1's row; Only VM is the shared baseline of 00b.
DMN_TABLE_1_RUNS = {
    ("only_vm", "base"): "Only VM",
    ("dmn", "only_h"): "Only h_t in LM and SM",
    ("dmn", "no_skip"): "No skip connections in UM",
    ("dmn", "no_filters"): "No dynamic filters",
    ("dmn", "no_concat"): "No concatenation of r_t",
    ("dmn", "base"): "DMN",
}


@register_report("dmn")
def dmn_report(records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """DMN Table 1 (ablations, testA) beside ours; the low-resolution stage, SRU vs LSTM."""
    runs = records[((records["model"] == "dmn")
                    | ((records["model"] == "only_vm") & (records["variant"] == "base")))
                   & ablation_runs(records)]
    if not (runs["model"] == "dmn").any():
        return []
    written = []
    for (dataset, style, profile), group in runs.groupby(["dataset", "style", "profile"]):
        suffix = f"{dataset}-{style}-{profile}" if style else f"{dataset}-{profile}"
        keyed = group.set_index(["model", "variant"]).index
        rows = group[[key in DMN_TABLE_1_RUNS for key in keyed]]
        rows = rows.assign(row=[DMN_TABLE_1_RUNS[k] for k in zip(
            rows["model"], rows["variant"], strict=True)])
        table_1 = results_table(rows, index=("row", "split"), columns=(), metric=DMN_METRICS,
                                order={"row": list(DMN_TABLE_1_RUNS.values())})
        same = records[(records["dataset"] == dataset) & (records["profile"] == profile)]
        table_1 = with_reference_rows(table_1, same, split=None, style=style)
        scale = with_reference_rows(scale_table(rows, ("row", "split")), same, split=None,
                                    style=style)
        mapping = {(row, split): ref for row, split in table_1.index
                   if row in DMN_TABLE_1_RUNS.values()
                   and (ref := paper_row("DMN", "Table 1", row, dataset, style, split))}
        bench = benchmark_label(dataset, style)
        md, csv = write_table(
            beside_paper(table_1, mapping, scale=scale), f"dmn_table1_{suffix}",
            f"DMN Table 1 on {bench} ({profile} profile) beside the paper's (UNC testA)",
            _dmn_notes(group, dataset, style), out_dir)
        low = group[group["variant"].str.endswith("-lowres")]
        low_table = results_table(low.assign(params=low["params"] / 1e6), index=(
            "variant", "split"), columns=(), metric=["overall_iou", "mean_iou", "Pr@0.5",
                                                     "train_time_s", "params"])
        low_md, low_csv = write_table(
            low_table, f"dmn_lowres_{suffix}",
            f"DMN's low-resolution stage on {bench} ({profile} profile): SRU vs LSTM (Fig. 7)",
            ["First training stage (no upsampling module), scored against the full-resolution "
             "masks with its logits upsampled bilinearly; fractions, train time in seconds "
             "(runs that shared the machine: compare speeds in benchmarks/sru_vs_lstm.py), "
             "parameters in millions.", *provenance_notes(low)], out_dir, floatfmt=".3f")
        bars = table_1.reset_index()
        figure = bar_plot(bars.assign(iou=bars["overall_iou"] * 100), x="row", y="iou",
                          hue="split", order=[r for r in DMN_TABLE_1_RUNS.values()
                                              if r in set(bars["row"])],
                          title=f"DMN Table 1 rows on {bench} (ours)", ylabel="overall IoU (%)",
                          size=(8, 3.6))
        figure.axes[0].tick_params(axis="x", labelrotation=20, labelsize=7)
        written += [md, csv, low_md, low_csv, save_figure(figure, f"dmn_table1_{suffix}",
                                                          out_dir)]
    return written


def _dmn_notes(runs: pd.DataFrame, dataset: str, style: str) -> list[str]:
    ours = benchmark_name(dataset, style)
    if dataset == "shapes":
        paper = (f"the paper's: UNC (RefCOCO) testA, set beside our testA ({ours}'s testA is "
                 "an analogue, not the same test).")
    elif paper_dataset(dataset, style) == UNC:
        paper = "the paper's: UNC (RefCOCO) testA, set beside our testA (the same benchmark)."
    else:
        paper = (f"the paper reports UNC (RefCOCO) testA only, another benchmark than {ours}: "
                 "no paper column here.")
    return [
        f"Ours: {ours}, overall IoU and Pr@X in percent on each split; {paper} Scale: n "
        "expressions evaluated, training steps of both stages, and 'short' where a run trained "
        "below its recipe's budget.",
        "DMN rows: two training stages (low resolution, then the upsampling module); Only VM "
        "is the image-only baseline of notebook 00b. Floors and ceiling: the untrained "
        "reference predictors (notebook 00) on the same samples.",
        *provenance_notes(runs),
    ]
