"""Notebook 09: every system in one harness (the leaderboard), by phenomenon, beside the papers.

No paper of the course could compare all of these systems under one protocol: each trained its
own backbone, at its own image size, for its own schedule. The leaderboard's runs share
everything but the model and its budget (ShapeRef at the quick profile's size, small_cnn, batch
32, one recipe; each system for the steps of its ablation runs, which are the same runs), so
their differences are the models' own; the untrained reference predictors stand beside them as
floors and ceiling. The ``leaderboard`` report writes, from those run records alone:

- ``leaderboard_<benchmark>-<profile>``: each system on each style and split (overall IoU, mean
  IoU, Pr@0.5/0.7/0.9), its cost (steps, parameters, training and inference time) and, as a
  separate column group, the paper's own number on the RefCOCO-family analogue with its source;
- ``leaderboard_summary_...``: one row per system (val), the table README.md shows;
- ``leaderboard_phenomena_...`` (+ figure): overall IoU per phenomenon tag, per style;
- ``leaderboard_ris_...``: recurrent instance segmentation on its own task (notebook 08's run).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from refseg_lib.data.types import PHENOMENA
from refseg_lib.experiments import (
    LEADERBOARD,
    LEADERBOARD_RIS,
    LEADERBOARD_STYLES,
    get_profile,
)
from refseg_lib.paper_numbers import GREF_GOOGLE, GREF_UMD, UNC, UNC_PLUS, paper_numbers
from refseg_lib.reports.tables import (
    REFERENCE_ROWS,
    PaperRef,
    beside_paper,
    latest_records,
    paper_metric,
    results_table,
    scale_table,
    whole_budget,
)
from refseg_lib.reports.writing import (
    bar_plot,
    curves_plot,
    provenance_notes,
    register_report,
    save_figure,
    write_table,
)

METRICS = ("overall_iou", "mean_iou", "Pr@0.5", "Pr@0.7", "Pr@0.9")
TAGS = ("category only", *PHENOMENA[1:])  # PHENOMENA[0], "category", is every expression
COST = ("steps", "params (M)", "train (s)", "inference (ms)")
MIN_TAG_SAMPLES = 10  # fewer expressions of a phenomenon in a split: no cell (too noisy)

# The paper's own row for each system, per style: the RefCOCO-family benchmark the style
# imitates (notebook 00): refshape ~ UNC, refshape+ ~ UNC+, refshape-g ~ G-Ref (the Google split
# for the papers of 2018-2019, UMD for MCN and M3Att). Only VM appears in DMN's Table 1 only.
_DMN2, _CMSA1 = ("DMN", "Table 2", "DMN"), ("CMSA", "Table 1", "Ours")
_MCN5 = ("MCN", "Table 5", "MCN (ours), darknet53")
_M3ATT = ("M3Att", "Survey Table 2", "M3Att [99] [TIP'23]")
PAPER_ROWS: dict[str, dict[str, tuple[str, str, str, str]]] = {
    "Only VM": {"refshape": ("DMN", "Table 1", "Only VM", UNC)},
    "LSTM-CNN": {"refshape-g": ("CMSA", "Table 1", "LSTM-CNN [10]", GREF_GOOGLE)},
    "DMN": {"refshape": (*_DMN2, UNC), "refshape+": (*_DMN2, UNC_PLUS),
            "refshape-g": (*_DMN2, GREF_GOOGLE)},
    "CMSA+GF": {"refshape": (*_CMSA1, UNC), "refshape+": (*_CMSA1, UNC_PLUS),
                "refshape-g": (*_CMSA1, GREF_GOOGLE)},
    "MCN": {"refshape": (*_MCN5, UNC), "refshape+": (*_MCN5, UNC_PLUS),
            "refshape-g": (*_MCN5, GREF_UMD)},
    "M3Att": {"refshape": (*_M3ATT, UNC), "refshape+": (*_M3ATT, UNC_PLUS),
              "refshape-g": (*_M3ATT, GREF_UMD)},
}


# the rows of the untrained reference predictors, below the systems (tables.REFERENCE_ROWS)
REFERENCE_SYSTEMS = {label: key for key, label in REFERENCE_ROWS.items()}
SYSTEMS = (*LEADERBOARD, *REFERENCE_SYSTEMS)


def leaderboard_runs(records: pd.DataFrame) -> pd.DataFrame:
    """The records ``LEADERBOARD`` and ``REFERENCE_SYSTEMS`` name (newest of each run), with a
    ``system`` column and the run's whole budget and cost: ``steps`` and ``train_s`` summed over
    the stages it was initialised from (DMN's low-resolution stage), ``ms`` inference time per
    expression."""
    runs = latest_records(records)
    chosen = {(model, variant): system for system, (model, variant) in
              {**LEADERBOARD, **REFERENCE_SYSTEMS}.items()}
    keys = pd.Series(list(zip(runs["model"], runs["variant"], strict=True)), index=runs.index)
    picked = runs[keys.isin(list(chosen)) & (runs["dataset"] == "shapes")]
    steps, train = zip(*[whole_budget(runs, row) for _, row in picked.iterrows()],
                       strict=True) if len(picked) else ((), ())
    return picked.assign(
        system=[chosen[k] for k in zip(picked["model"], picked["variant"], strict=True)],
        steps=list(steps), train_s=list(train),
        ms=1000.0 * picked["eval_time_s"] / picked["n"])


def _paper_refs(index: pd.Index) -> dict[tuple, PaperRef]:
    """Rows (system, style, split) -> the paper row, where the paper printed a number there."""
    wanted = {paper_metric(m) for m in METRICS}
    refs = {}
    for system, style, split in index:
        given = PAPER_ROWS.get(system, {}).get(style)
        if given is None:
            continue
        paper, table, row, dataset = given
        found = paper_numbers(paper, table, row=row, dataset=dataset, split=split)
        if set(found["metric"]) & wanted:
            refs[system, style, split] = PaperRef(paper, table, row, dataset, split)
    return refs


def leaderboard_tables(records: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The leaderboard from the records of one benchmark and profile: ``full`` (system, style,
    split; ours in percent, the cost, the paper's numbers and source), ``summary`` (val, one
    row per system), ``phenomena`` (overall IoU in percent per tag; rows system, columns style
    and tag; blank where the style has fewer than ``MIN_TAG_SAMPLES`` such expressions),
    ``ris`` (RIS on its own task, every split). A system without records is a
    missing row; no leaderboard record at all gives ``{}``."""
    runs = leaderboard_runs(records)
    tables: dict[str, pd.DataFrame] = {}
    if not runs.empty:
        order = {"system": list(SYSTEMS), "style": list(LEADERBOARD_STYLES)}
        index = ("system", "style", "split")
        ours = results_table(runs, index=index, columns=(), metric=list(METRICS), order=order)
        full = beside_paper(ours, _paper_refs(ours.index), scale=scale_table(runs, index))
        cost = _cost(runs, index, order)
        paper = full["paper (%)"].dropna(axis=1, how="all")
        tables["full"] = pd.concat({"ours (%)": full["ours (%)"], "cost": cost,
                                    "scale": full["scale"][["n", "short"]],
                                    "paper (%)": paper,
                                    "source": full[("source", "")].rename("").to_frame()},
                                   axis=1)
        tables["summary"] = _summary(runs, order)
        tagged = [c for c in (f"overall_iou[{t}]" for t in TAGS) if c in runs]
        if tagged:
            val = runs[runs["split"] == "val"]
            counts = {c: "n" + c.removeprefix("overall_iou") for c in tagged}
            val = val.assign(**{c: val[c].where(val[n] >= MIN_TAG_SAMPLES)
                                for c, n in counts.items() if n in val})
            phenomena = results_table(val, index=("system",), columns=("style",),
                                      metric=tagged, order=order) * 100
            phenomena.columns = phenomena.columns.set_names(["tag", "style"]).map(
                lambda c: (c[0].removeprefix("overall_iou[").removesuffix("]"), c[1]))
            tables["phenomena"] = phenomena.swaplevel(axis=1).sort_index(
                axis=1, key=lambda level: level.map(
                    {**{s: i for i, s in enumerate(LEADERBOARD_STYLES)},
                     **{t: i for i, t in enumerate(TAGS)}}.get))
    every = latest_records(records)
    model, variant = LEADERBOARD_RIS
    ris = every[(every["model"] == model) & (every["variant"] == variant)]
    if not ris.empty:
        steps, train = zip(*[whole_budget(every, row) for _, row in ris.iterrows()],
                           strict=True)
        ris = ris.assign(system="RIS (every object)", steps=list(steps), train_s=list(train),
                         ms=1000.0 * ris["eval_time_s"] / ris["images"])
        own = results_table(ris, index=("system", "split"), columns=(),
                            metric=["count_acc", "sbd", "ap@0.5", "overall_iou"]) * 100
        tables["ris"] = pd.concat({"ours (%)": own,
                                   "cost": _cost(ris, ("system", "split"), {})}, axis=1)
    return tables


def _cost(runs: pd.DataFrame, index: tuple[str, ...], order: Mapping) -> pd.DataFrame:
    """Steps, parameters (millions), training seconds (all stages) and ms per expression."""
    cost = results_table(runs.assign(params_m=runs["params"] / 1e6), index=index, columns=(),
                         metric=["steps", "params_m", "train_s", "ms"], order=order)
    cost.columns = list(COST)
    return cost


def _summary(runs: pd.DataFrame, order: Mapping) -> pd.DataFrame:
    """Val only, one row per system: overall IoU per style and Pr@0.5 (%), parameters, training
    and inference time on refshape, and the paper's overall or mean IoU on UNC (RefCOCO) val."""
    val = runs[runs["split"] == "val"]
    iou = results_table(val, index=("system",), columns=("style",), metric="overall_iou",
                        order=order) * 100
    table = pd.concat({"overall IoU (%)": iou}, axis=1)
    base = val[val["style"] == "refshape"]
    if not base.empty:
        table[("Pr@0.5 (%)", "refshape")] = results_table(
            base, index=("system",), columns=(), metric="Pr@0.5")["Pr@0.5"] * 100
        cost = _cost(base, ("system",), order)
        for column in COST:
            table[(column, "refshape")] = cost[column]
    quoted, sources = {}, {}
    for system in table.index:
        given = PAPER_ROWS.get(system, {}).get("refshape")
        found = paper_numbers(*given[:2], row=given[2], dataset=UNC, split="val") if given \
            else pd.DataFrame(columns=["metric"])
        found = found[found["metric"].isin(["overall IoU", "mean IoU"])]
        if len(found):
            quoted[system] = f"{found.value.iloc[0]:.2f} ({found.metric.iloc[0]})"
            sources[system] = f"{given[0]} {given[1]}"
    table[("paper, UNC val (%)", "")] = pd.Series(quoted, dtype=object)
    table[("source", "")] = pd.Series(sources, dtype=object)
    return table


def phenomena_figure(phenomena: pd.DataFrame) -> Figure:
    """One heatmap per style: systems x phenomenon tags, overall IoU (%), one colour scale."""
    styles = [s for s in LEADERBOARD_STYLES if s in phenomena.columns.get_level_values(0)]
    fig = Figure(figsize=(4.2 * len(styles) + 1.5, 0.45 * len(phenomena) + 1.8),
                 layout="constrained")
    axes = fig.subplots(1, len(styles), sharey=True, squeeze=False)[0]
    for i, (ax, style) in enumerate(zip(axes, styles, strict=True)):
        panel = phenomena[style].reindex(columns=[t for t in TAGS if t in phenomena[style]])
        sns.heatmap(panel, annot=True, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=ax,
                    cbar=i == len(styles) - 1, cbar_kws={"label": "overall IoU (%)"})
        ax.set_title(style)
        ax.set_xlabel("")
        ax.set_ylabel("" if i else "system")
        ax.tick_params(axis="x", labelrotation=35)
        ax.tick_params(axis="y", labelrotation=0)
    fig.suptitle(f"Overall IoU by phenomenon (val; blank: fewer than {MIN_TAG_SAMPLES} such "
                 "expressions in the style)")
    return fig


def _notes(runs: pd.DataFrame) -> list[str]:
    return [
        "One harness for every system: ShapeRef at the profile's image size, the small_cnn "
        "backbone, batch 16 and one recipe (experiments.PROFILES); the recipe gives each "
        "system its own budget (experiments.recipe_steps), and the same runs are its notebook's "
        "ablation table. The steps column says what each run trained (all stages), n the "
        "expressions it evaluated, short whether it stopped below its budget. Each system is "
        "its full model: DMN after its upsampling stage, CMSA with gated "
        "fusion, MCN with GARAN and CEM and its mask after ASNLS, M3Att with IMI and LFR. "
        "Floors and ceiling: the untrained reference predictors (notebook 00) on the same "
        "samples: the biggest object, the biggest object of the named category, and the "
        "resolver that reads the symbolic scene.",
        "Ours: percent of the val/testA/testB samples at threshold 0.5 for every system "
        "(MCN's own protocol binarises at 0.35 and reports mean IoU). Cost: steps of all "
        "stages, parameters in millions, training seconds of all stages, inference in ms per "
        "expression at the evaluation's batch of 32; times are those of the recording machine "
        "(its hardware is in each record) and vary between runs; everything else is "
        "reproducible.",
        "Paper (%): the paper's own number on the RefCOCO-family benchmark the style imitates "
        "(refshape ~ UNC, refshape+ ~ UNC+, refshape-g ~ G-Ref), with its source: another "
        "dataset, backbone and budget, so set beside ours, never compared digit by digit. MCN "
        "prints mean IoU, the others overall IoU.",
        *provenance_notes(runs),
    ]


@register_report("leaderboard")
def leaderboard_report(records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Every system in one harness beside the papers, by phenomenon, and RIS on its own task."""
    written: list[Path] = []
    for (dataset, profile), group in records.groupby(["dataset", "profile"]):
        tables = leaderboard_tables(group)
        if not tables:
            continue
        suffix = f"{dataset}-{profile}"
        runs = leaderboard_runs(group)
        notes = _notes(runs) if not runs.empty else []
        titles = {"full": "Leaderboard: every system in one harness, beside the papers",
                  "summary": "Leaderboard summary (val)",
                  "phenomena": "Leaderboard: overall IoU (%) by phenomenon (val)",
                  "ris": "Recurrent instance segmentation on its own task (every object)"}
        for name, table in tables.items():
            stem = "leaderboard" if name == "full" else f"leaderboard_{name}"
            extra = notes if name != "ris" else [
                "RIS segments every object of a scene and reads no sentence, so it has no row "
                "in the referring leaderboard; notebook 08's curriculum run, the same step "
                "budget in all. Percent; inference in ms per image.",
                *provenance_notes(group[group["model"] == LEADERBOARD_RIS[0]])]
            written += write_table(table, f"{stem}_{suffix}", f"{titles[name]} ({profile})",
                                   extra, out_dir)
        if "phenomena" in tables:
            written.append(save_figure(phenomena_figure(tables["phenomena"]),
                                       f"leaderboard_phenomena_{suffix}", out_dir))
        if not runs.empty:
            curves = curves_plot(group, {key: system for system, key in LEADERBOARD.items()},
                                 title=f"Learning curves of the full models, refshape val "
                                       f"({profile})")
            written.append(save_figure(curves, f"leaderboard_curves_{suffix}", out_dir))
            bars = runs[runs["split"] == "val"]
            figure = bar_plot(bars.assign(iou=bars["overall_iou"] * 100), x="system", y="iou",
                              hue="style", order=[s for s in SYSTEMS if s in set(
                                  bars["system"])], hue_order=[s for s in LEADERBOARD_STYLES
                                                               if s in set(bars["style"])],
                              title=f"Leaderboard, val ({profile})", ylabel="overall IoU (%)")
            written.append(save_figure(figure, f"leaderboard_{suffix}", out_dir))
    return written


def readme_section(records: pd.DataFrame, reports_link: str = "reports") -> str:
    """README.md's results section (``python -m refseg_lib report`` writes it between the
    results markers): the leaderboard summary of the ShapeRef quick-profile records, RIS on its
    own task, the phenomenon heatmap and the claims ledger's tally, with links."""
    from refseg_lib.reports.claims import VERDICTS, claims_ledger

    runs = records[(records["dataset"] == "shapes") & (records["profile"] == "quick")]
    tables = leaderboard_tables(runs) if len(runs) else {}
    lines = []
    if "summary" in tables:
        size = get_profile("quick").image_size
        summary = tables["summary"].astype(object)
        summary = summary.where(summary.notna(), None)
        summary.columns = [" · ".join(p for p in c if p) for c in summary.columns]
        lines += [
            f"**Leaderboard** (quick profile: ShapeRef at {size} px, every system in the same "
            f"harness for its own budget, the steps column; below them the untrained floors and "
            f"ceiling; val; train and inference times vary between machines). The full table, "
            f"with testA/testB, Pr@0.7/0.9 and the papers' numbers: "
            f"[{reports_link}/leaderboard_shapes-quick.md]"
            f"({reports_link}/leaderboard_shapes-quick.md).", "",
            summary.reset_index().to_markdown(index=False, floatfmt=".2f", missingval="—"), ""]
    else:
        lines += ["No leaderboard run yet: `make reproduce`, or notebook 09 with `full=True`.",
                  ""]
    if "ris" in tables:
        val = tables["ris"].xs("val", level="split").iloc[0]
        lines += [f"RIS on its own task (every object of a scene, val): count accuracy "
                  f"{val[('ours (%)', 'count_acc')]:.1f}%, SBD {val[('ours (%)', 'sbd')]:.1f}, "
                  f"AP@0.5 {val[('ours (%)', 'ap@0.5')]:.1f} "
                  f"([{reports_link}/leaderboard_ris_shapes-quick.md]"
                  f"({reports_link}/leaderboard_ris_shapes-quick.md)).", ""]
    if "phenomena" in tables:
        lines += [f"![Overall IoU by phenomenon]({reports_link}/figures/"
                  "leaderboard_phenomena_shapes-quick.png)", ""]
    ledger = claims_ledger(records)
    counts = ledger["verdict"].value_counts()
    lines.append(f"**Claims ledger**: [{reports_link}/CLAIMS.md]({reports_link}/CLAIMS.md), "
                 f"{len(ledger)} claims of the five papers: "
                 + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS) + ".")
    return "\n".join(lines)
