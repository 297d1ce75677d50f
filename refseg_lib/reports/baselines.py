"""Report ``baselines``: an image-only model (DMN's Only VM) and LSTM-CNN beside the papers.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path

import pandas as pd

from refseg_lib.paper_numbers import (
    GREF_GOOGLE,
    OVERALL_IOU,
    REFERIT,
    paper_numbers,
)
from refseg_lib.reports.tables import (
    PaperRef,
    benchmark_label,
    beside_paper,
    drop_constant_levels,
    paper_row,
    ranker,
    results_table,
    scale_table,
)
from refseg_lib.reports.writing import (
    bar_plot,
    provenance_notes,
    register_report,
    save_figure,
    write_table,
)

# ---------------------------------------------------------------------------------------------
# Report: baselines (an image-only model and LSTM-CNN)
# ---------------------------------------------------------------------------------------------

BASELINE_MODELS = ("only_vm", "lstm_cnn")
BASELINE_METRICS = ("overall_iou", "mean_iou", "Pr@0.5")


_ONLY_VM = PaperRef("DMN", "Table 1", "Only VM")
_LSTM_CNN = PaperRef("CMSA", "Table 1", "LSTM-CNN [10]")


def _baseline_paper_row(model: str, dataset: str, style: str, split: str) -> PaperRef | None:
    """The paper row a baseline run corresponds to, or None: on the papers' benchmark of the
    record (``tables.paper_row``) where the paper prints a number of that split.

    Only VM: DMN Table 1 (UNC testA) beside our testA on RefCOCO's UNC split and on its
    ShapeRef analogue ``refshape``. LSTM-CNN: CMSA Table 1 (= DMN Table 2), which quotes only
    G-Ref (Google split) val and ReferIt test (REFER's berkeley split of RefCLEF); no paper of
    ours quotes its UNC numbers.
    """
    ref = {"only_vm": _ONLY_VM, "lstm_cnn": _LSTM_CNN}.get(model)
    return paper_row(ref.paper, ref.table, ref.row, dataset, style, split) if ref else None


def _row_dicts(table: pd.DataFrame, constant: Mapping[str, str]) -> dict[Hashable, dict]:
    """Each row key of ``table`` -> {level name: value}, with the dropped constant levels."""
    names = list(table.index.names)
    rows = {}
    for key in table.index:
        parts = key if isinstance(key, tuple) else (key,)
        rows[key] = {**constant, **dict(zip(names, parts, strict=True))}
    return rows


@register_report("baselines")
def baselines_report(records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Only VM (DMN Table 1, row 1) and LSTM-CNN (Hu et al., ECCV 2016) on every benchmark run."""
    if not records["model"].isin(BASELINE_MODELS).any():
        return []
    runs = records[records["model"].isin((*BASELINE_MODELS, "reference"))]  # with the floors
    runs = runs.assign(benchmark=[benchmark_label(d, s) for d, s in
                                  zip(runs["dataset"], runs["style"], strict=True)])
    index = ("model", "variant", "benchmark", "split", "profile")
    ours = results_table(runs, index=index, columns=(), metric=BASELINE_METRICS)
    scale = scale_table(runs, index)
    ours, constant = drop_constant_levels(ours, keep=("model", "benchmark", "split"))
    scale.index = scale.index.droplevel(list(constant))
    where = dict(zip(runs["benchmark"], zip(runs["dataset"], runs["style"], strict=True),
                     strict=False))
    mapping = {key: ref for key, row in _row_dicts(ours, constant).items()
               if (ref := _baseline_paper_row(row["model"], *where[row["benchmark"]],
                                              row["split"]))}
    table = beside_paper(ours, mapping, scale=scale)
    md, csv = write_table(table, "baselines", "Baselines: Only VM and LSTM-CNN beside the papers",
                          _baseline_notes(runs, constant), out_dir)
    bars, order = _bars(ours)
    figure = bar_plot(bars, x="benchmark · split", y="overall IoU (%)", hue="run", order=order,
                      title="Baselines: overall IoU (ours)")
    return [md, csv, save_figure(figure, "baselines", out_dir)]


def _bars(ours: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Long format for the bar plot (one row per run, overall IoU in percent) and the x order.

    Bars are grouped by benchmark and split; the hue names the run (model, and variant or
    profile where the table keeps them).
    """
    flat = ours.reset_index()
    run_levels = [n for n in ours.index.names if n not in ("benchmark", "split")]
    order = ours.index.droplevel(run_levels).unique().sort_values(key=ranker({}))
    label = {key: f"{key[0]} · {key[1]}" for key in order}
    return pd.DataFrame({
        "run": [" / ".join(map(str, r)) for r in flat[run_levels].itertuples(index=False)],
        "benchmark · split": [label[b, s] for b, s in zip(flat["benchmark"], flat["split"],
                                                           strict=True)],
        "overall IoU (%)": flat["overall_iou"] * 100.0,
    }), list(label.values())


def _quoted(ref: PaperRef, metric: str, **where: str) -> str:
    """A published number as text, read from ``paper_numbers`` (never typed twice)."""
    found = paper_numbers(ref.paper, ref.table, row=ref.row, metric=metric, **where)
    if len(found) != 1:
        raise LookupError(f"{ref.label()}: expected one {metric!r} number, found {len(found)}")
    return f"{found.value[0]:.2f}"


def _baseline_notes(runs: pd.DataFrame, constant: Mapping[str, str]) -> list[str]:
    same = ", ".join(f"{k} {v or '(none)'}" for k, v in constant.items())
    return [
        "Metrics: overall IoU (total intersection / total union over the split), mean IoU "
        "(average of per-sample IoUs) and Pr@0.5 (share of samples with IoU >= 0.5); ours "
        "and the papers' both in percent. Scale: n expressions evaluated, training steps of "
        "all stages, and 'short' where a run trained below its recipe's budget.",
        *([f"All rows: {same}."] if same else []),
        "only_vm: the visual model alone, no sentence (DMN's 'Only VM', a salient-object "
        "prior). Its paper columns are DMN Table 1 row 1 (UNC testA: overall IoU "
        f"{_quoted(_ONLY_VM, OVERALL_IOU)}, Pr@0.5 {_quoted(_ONLY_VM, 'Pr@0.5')}; DMN reports "
        "no mean IoU), set beside our testA rows of RefCOCO's UNC split and of ShapeRef's "
        "refshape, which is an analogue of UNC, not the same benchmark.",
        "lstm_cnn: Hu, Rohrbach, Darrell, 'Segmentation from natural language expressions', "
        "ECCV 2016. Its UNC numbers are not in our papers: DMN Table 2 and CMSA Table 1 quote "
        f"only G-Ref (Google split) val {_quoted(_LSTM_CNN, OVERALL_IOU, dataset=GREF_GOOGLE)} "
        f"and ReferIt test {_quoted(_LSTM_CNN, OVERALL_IOU, dataset=REFERIT)}, so its paper "
        "columns stay empty except on RefCOCOg's Google split (val) and on ReferIt, REFER's "
        "berkeley split of RefCLEF (refclef/berkeley, test).",
        *provenance_notes(runs),
    ]
