"""Tables and figures -> files: Markdown, CSV and PNG written byte-for-byte reproducibly and
atomically (``paths.atomic_write``: a reader never sees half a report), the notes every report
carries (provenance, records the library does not know), the registry of reports
(``register_report``, ``build_reports``) and the index ``reports/README.md``.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from refseg_lib.metrics import PRIMARY_THRESHOLD
from refseg_lib.paths import atomic_write, atomic_write_text, reports_dir
from refseg_lib.records import RecordWarning
from refseg_lib.reports.tables import (
    CSV_FLOAT_FORMAT,
    FIGURE_DPI,
    MD_FLOAT_FORMAT,
    MISSING,
    REFERENCE_ROWS,
    SPLIT_ORDER,
    benchmark_label,
    benchmark_name,
    known_keys,
    latest_records,
    paper_dataset,
    require_columns,
    sort_key,
    unknown_records,
    with_scale,
)

# ---------------------------------------------------------------------------------------------
# Writing tables and figures
# ---------------------------------------------------------------------------------------------


def _out_dir(out_dir: str | Path | None) -> Path:
    return Path(out_dir) if out_dir is not None else reports_dir()


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"report name {name!r}: use letters, digits, '_', '.', '-' (no folders)")


def flat_table(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its named index as columns and column levels joined by " · " (for writing)."""
    flat = df.copy()
    if isinstance(flat.columns, pd.MultiIndex):
        flat.columns = [" · ".join(str(p) for p in parts if str(p)) for parts in flat.columns]
    has_index = any(name is not None for name in flat.index.names)
    return flat.reset_index() if has_index else flat.reset_index(drop=True)


def write_table(df: pd.DataFrame, name: str, title: str, notes: Iterable[str] = (),
                out_dir: str | Path | None = None, *, floatfmt: str = MD_FLOAT_FORMAT
                ) -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.md`` (title, notes, table) and ``<out_dir>/<name>.csv``.

    Markdown floats have ``floatfmt`` (two decimals, for percentages; ".3f" suits fractions)
    and a missing number reads "—"; the CSV keeps four decimals and leaves missing numbers
    empty. ``out_dir`` defaults to ``reports_dir()``.
    Nothing time-dependent is written, so the same table gives the same bytes; each file is
    written atomically.
    """
    _check_name(name)
    out = _out_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    flat = flat_table(df)
    shown = flat.astype(object).where(flat.notna(), None)
    bullets = "".join(f"- {note}\n" for note in notes)
    markdown = (f"# {title}\n\n" + (bullets + "\n" if bullets else "")
                + shown.to_markdown(index=False, floatfmt=floatfmt, missingval=MISSING)
                + "\n")
    csv = flat.to_csv(index=False, float_format=CSV_FLOAT_FORMAT, lineterminator="\n")
    return (atomic_write_text(out / f"{name}.md", markdown),
            atomic_write_text(out / f"{name}.csv", csv))


def bar_plot(data: pd.DataFrame, x: str, y: str, hue: str | None = None, *,
             title: str | None = None, ylabel: str | None = None,
             order: Sequence | None = None, hue_order: Sequence | None = None,
             size: tuple[float, float] = (6.4, 3.6)) -> Figure:
    """Bars of ``y`` per ``x`` (and ``hue``) from a long-format DataFrame.

    Pass one row per bar: rows sharing ``x`` and ``hue`` would be averaged (seaborn's
    estimator; no error bars are drawn). ``order`` / ``hue_order`` default to sorted values,
    so the picture does not depend on the order of the rows.
    """
    require_columns(data, [c for c in (x, y, hue) if c], "bar_plot")
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    sns.barplot(data=data, x=x, y=y, hue=hue, ax=ax, errorbar=None,
                order=order or sorted(set(data[x]), key=sort_key),
                hue_order=(hue_order or sorted(set(data[hue]), key=sort_key)) if hue else None)
    ax.set_ylabel(ylabel or y)
    _slant_labels(ax)
    if title:
        ax.set_title(title)
    if hue:
        ax.legend(title=hue, fontsize=8, title_fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0))  # outside the axes: never over a bar
    return fig


def curves_plot(runs: pd.DataFrame, rows: Mapping[tuple[str, str], str], *, split: str = "val",
                style: str = "refshape", metric: str = "overall_iou",
                title: str | None = None, size: tuple[float, float] = (6.4, 3.4)) -> Figure:
    """The learning curves (``RunRecord.curve``: the val score at points of training) of the
    runs ``rows`` names by (model, variant), one line each, against the steps of all the run's
    stages (a run started from an earlier stage's checkpoint continues its curve); the
    reference predictors of ``runs`` (``tables.REFERENCE_ROWS``) as horizontal lines."""
    runs = latest_records(runs)
    runs = runs[(runs["split"] == split) & (runs["style"] == style)]
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    for (model, variant), label in rows.items():
        found = runs[(runs["model"] == model) & (runs["variant"] == variant)]
        points = _whole_curve(runs, found.iloc[0], metric) if len(found) else []
        if points:
            ax.plot(*zip(*points, strict=True), marker=".", label=label)
    for (model, variant), label in REFERENCE_ROWS.items():
        found = runs[(runs["model"] == model) & (runs["variant"] == variant)]
        if len(found) and metric in found and variant != "resolver":
            ax.axhline(100 * float(found[metric].iloc[0]), color="grey", lw=1,
                       ls=":" if "largest" in variant else "--", label=label)
    ax.set(xlabel="training step (all stages)", ylabel=f"{split} {metric} (%)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _whole_curve(runs: pd.DataFrame, row: pd.Series, metric: str) -> list[tuple[float, float]]:
    """(step, %) of a run's curve, after the curve of the stage it started from
    (``config["init_from"]``: DMN's low-resolution stage), steps counted from the first."""
    start = (row.get("config") or {}).get("init_from") if isinstance(row.get("config"), dict) \
        else None
    before: list[tuple[float, float]] = []
    if start:
        model, variant = Path(start).name.split("__")[:2]
        earlier = runs[(runs["model"] == model) & (runs["variant"] == variant)]
        if len(earlier):
            before = _whole_curve(runs, earlier.iloc[0], metric)
    offset = before[-1][0] if before else 0.0
    curve = row.get("curve") if isinstance(row.get("curve"), list) else []
    return before + [(offset + p["step"], 100 * p[metric]) for p in curve if metric in p]


def _slant_labels(ax) -> None:
    """x tick labels at 30 degrees, anchored at their right end, so long labels never overlap."""
    for text in ax.get_xticklabels():
        text.set_rotation(30)
        text.set_horizontalalignment("right")
    for text in ax.get_yticklabels():
        text.set_rotation(0)


def _label(key: Hashable, sep: str) -> str:
    """A row or column key as text; the parts of a tuple key joined by ``sep``."""
    return sep.join(map(str, key)) if isinstance(key, tuple) else str(key)


def heatmap(table: pd.DataFrame, *, title: str | None = None, fmt: str = ".1f",
            cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
            cbar_label: str | None = None) -> Figure:
    """A wide table (e.g. ``results_table``) as an annotated heatmap, one cell per number."""
    data = pd.DataFrame(table.to_numpy(dtype=float),
                        index=[_label(k, " / ") for k in table.index],
                        columns=[_label(c, " · ") for c in table.columns])
    width = 2.5 + 0.12 * max(map(len, data.index)) + 0.9 * data.shape[1]
    height = 1.2 + 0.1 * max(map(len, data.columns)) + 0.45 * data.shape[0]
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    sns.heatmap(data, annot=True, fmt=fmt, cmap=cmap, vmin=vmin, vmax=vmax, ax=ax,
                cbar_kws={"label": cbar_label} if cbar_label else None)
    _slant_labels(ax)
    if title:
        ax.set_title(title)
    return fig


def save_figure(fig: Figure, name: str, out_dir: str | Path | None = None) -> Path:
    """Save ``fig`` as ``<out_dir>/figures/<name>.png`` with deterministic bytes.

    The PNG carries no "Software" (matplotlib version) entry, and matplotlib writes no date
    into PNGs, so the same figure gives the same file. It is written atomically.
    """
    _check_name(name)
    folder = _out_dir(out_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_write(folder / f"{name}.png", lambda f: fig.savefig(
        f, format="png", dpi=FIGURE_DPI, metadata={"Software": None}))


# ---------------------------------------------------------------------------------------------
# Notes every report carries: where its numbers come from
# ---------------------------------------------------------------------------------------------


def _thresholds(records: pd.DataFrame) -> list[str]:
    """The binarisation thresholds the runs were evaluated at, as the records state them:
    ``config["eval_thresholds"]`` (the engine's) or ``config["threshold"]``."""
    found: set[float] = set()
    for config in records.get("config", pd.Series(dtype=object)):
        if not isinstance(config, Mapping):
            continue
        given = config.get("eval_thresholds", config.get("threshold", ()))
        found |= {float(t) for t in (given if isinstance(given, (list, tuple)) else [given])}
    return [f"{t:g}" for t in sorted(found, reverse=True)]


def provenance_notes(records: pd.DataFrame) -> list[str]:
    """Notes naming the threshold, the scale (``scale_notes``) and the run records behind a table
    (grouped by source).

    Record files are named without their folder, so the notes do not depend on the machine.
    """
    frame = latest_records(records)
    thresholds = _thresholds(frame)
    notes = [f"Masks binarised at probability > {PRIMARY_THRESHOLD:g} (the library's fixed "
             "threshold; a metric suffixed @t uses t)"
             + (f"; the runs evaluated thresholds {', '.join(thresholds)}." if thresholds
                else "."), *scale_notes(records)]
    groups = frame.groupby(["source", "profile", "git_revision"], sort=True)
    for (source, profile, revision), runs in groups:
        created = sorted(runs["created"])
        when = created[0] if created[0] == created[-1] else f"{created[0]} to {created[-1]}"
        files = sorted(Path(p).name for p in runs.get("path", ()) if isinstance(p, str) and p)
        notes.append(f"{len(runs)} run record(s) from {source or 'an unnamed source'} "
                     f"(profile {profile or '?'}, git {revision or '?'}, created {when or '?'})"
                     + (f": {', '.join(files)}." if files else "."))
    return notes


def _count(value: float) -> str:
    return "?" if pd.isna(value) else f"{value:.0f}"


def _runs_scale(frame: pd.DataFrame) -> pd.DataFrame:
    """``with_scale``'s records gathered per run (its splits together): model, variant, label
    (with the benchmark, and the profile, where the records hold several), ``n`` as {split: n},
    steps, recipe and short."""
    several = frame[["dataset", "style"]].drop_duplicates().shape[0] > 1
    profiles = frame["profile"].nunique() > 1
    rank = {s: i for i, s in enumerate(SPLIT_ORDER)}
    rows = []
    for (model, variant, dataset, style, profile), run in frame.groupby(
            ["model", "variant", "dataset", "style", "profile"], sort=True):
        where = f" on {benchmark_label(dataset, style)}"
        suffix = f" ({profile})" if profiles and profile else ""
        splits = sorted(zip(run["split"], run["n"], strict=True),
                        key=lambda sn: (rank.get(sn[0], len(rank)), sn[0]))
        rows.append({"model": model, "variant": variant,
                     "label": f"{model}/{variant}{where if several else ''}{suffix}",
                     "named": f"{model}/{variant}{where}{suffix}",
                     "n": {s: n for s, n in splits if pd.notna(n)},
                     "steps": run["steps"].min(), "recipe": run["recipe_steps"].min(),
                     "short": bool(run["short"].any())})
    return pd.DataFrame(rows)


def _per_split(n: Mapping[str, float]) -> str:
    """"500", or split by split where the splits differ: "val 3, testA 2"."""
    if len(set(n.values())) == 1:
        return _count(next(iter(n.values())))
    return ", ".join(f"{s} {_count(v)}" for s, v in n.items()) or "?"


def _evaluated(n: Mapping[str, float]) -> str:
    """"500 expressions per split" or "val 3, testA 2 expressions"."""
    per_split = " per split" if len(set(n.values())) == 1 else ""
    return f"{_per_split(n)} expressions{per_split}"


def _most_common(values: pd.Series) -> float:
    """The most frequent value (the largest of a tie: a whole run's steps rather than its first
    stage's), so that the notes do not depend on the records' order."""
    return values.value_counts().sort_index(ascending=False).idxmax()


def _steps_per_model(trained: pd.DataFrame) -> str:
    """"cmsa 700 (1400: base-2x), mcn 900": each model's usual steps, then its other runs'."""
    parts = []
    for model, own in trained.groupby("model", sort=True):
        steps = own["steps"].fillna(-1.0)  # -1: unknown
        usual = _most_common(steps)
        others = "; ".join(f"{_count(v) if v >= 0 else '?'}: "
                           + ", ".join(sorted(set(own.loc[steps == v, "variant"])))
                           for v in sorted(set(steps) - {usual}))
        parts.append(f"{model} {_count(usual) if usual >= 0 else '?'}"
                     + (f" ({others})" if others else ""))
    return ", ".join(parts)


def scale_notes(records: pd.DataFrame) -> list[str]:
    """The scale of the runs behind a table (``tables.with_scale``): the expressions each
    evaluated per split (n) and the steps each trained (all stages), against the budget the
    course's recipe gives it (``experiments.recipe_steps``); then, in a note of their own, the runs
    trained below that budget ("short"), each named, so that no table passes a short run off
    as the recipe's result. One compact line where the runs agree, run by run where they differ.
    """
    frame = with_scale(records)
    if frame.empty:
        return []
    runs = _runs_scale(frame)
    single = runs["n"].map(lambda n: next(iter(n.values())) if len(set(n.values())) == 1
                           else math.nan)
    common = _most_common(single.dropna()) if single.notna().any() else math.nan
    odd = runs[single != common]
    listed = [f"{label} ({_per_split(n)})" for label, n in zip(odd["label"], odd["n"],
                                                                strict=True)]
    if math.isnan(common):  # no run evaluated the same number on each split
        text = f"Scale: expressions evaluated per split (n): {'; '.join(listed)}"
    else:
        text = (f"Scale: {_count(common)} expressions evaluated per split (n)"
                + (f", except {'; '.join(listed)}" if listed else ""))
    profiles = sorted(set(frame["profile"]) - {""})
    budget = f"the {profiles[0]} profile's" if len(profiles) == 1 else "its profile's"
    trained = runs[runs["recipe"] > 0]
    if len(trained):
        text += f"; training steps per run, all stages: {_steps_per_model(trained)}"
        above = [f"{r['label']} ({_count(r['steps'])} of {_count(r['recipe'])})"
                 for _, r in trained[trained["steps"] > trained["recipe"]].iterrows()]
        unknown = list(trained.loc[trained["steps"].isna(), "label"])
        if not above and not unknown and not trained["short"].any():
            text += (f"; each the run's budget in {budget} recipe (a first stage's: its "
                     "stage's; a -2x run's: twice the budget)")
        if above:
            text += f"; above the recipe's budget: {', '.join(above)}"
        if unknown:
            text += ("; steps unknown (an earlier stage or the training settings not "
                     f"recorded): {', '.join(unknown)}")
    if (runs["recipe"] == 0).any():
        text += "; the untrained reference predictors train none"
    notes = [text + "."]
    short = runs[runs["short"]]
    if len(short):
        named = "; ".join(f"{r['named']} trained {_count(r['steps'])} of "
                          f"{_count(r['recipe'])} steps, evaluated on {_evaluated(r['n'])}"
                          for _, r in short.iterrows())
        notes.append(f"**Short runs**, below {budget} budget: {named}. Their numbers are not "
                     "the recipe's result; a table sets them beside the papers only for "
                     "completeness.")
    return notes


_UNKNOWN_FIX = {"model": "register the model (refseg_lib.models.register_model) or correct the "
                         "records' model",
                "dataset": "correct the records' dataset, or add the dataset to the library",
                "benchmark": "correct the records' style",
                "split": "correct the records' split, or add it to reports.SPLIT_ORDER",
                "profile": "correct the records' profile, or add it to experiments.PROFILES"}


def unknown_notes(records: pd.DataFrame) -> list[str]:
    """One note per kind of key part the library does not know (``tables.unknown_records``),
    naming the values and the records' files, what the library knows and what to do: "1 record of
    a model the library does not know: 'foo' (foo__base__shapes-refshape__val__quick.json); no
    paper's table reads it. Known models: ..."; ``[]`` when it knows them all."""
    known, notes = known_keys(), []
    for kind, found in unknown_records(records).groupby("kind", sort=False):
        named = "; ".join(f"{value!r} ({', '.join(group['record'])})"
                          for value, group in found.groupby("value", sort=False))
        many = len(found) > 1
        them, their = ("them", "their") if many else ("it", "its")
        placed = {"model": f"no paper's table reads {them}",
                  "profile": f"no recipe's budget stands beside {them} ({their} scale is "
                             "unknown)"}.get(kind, f"no paper's number stands beside {them}")
        of = f"{kind}s" if found["value"].nunique() > 1 else f"a {kind}"
        notes.append(f"{len(found)} record{'s' if many else ''} of {of} the library does not "
                     f"know: {named}; {placed}. Known {kind}s: {', '.join(known[kind])}; "
                     f"{_UNKNOWN_FIX[kind]}.")
    return notes


def benchmark_note(dataset: str, style: str, where: str = "val") -> str:
    """A table's first note: our benchmark and the paper's it is set beside (on ``where``)."""
    ours, paper = benchmark_name(dataset, style), paper_dataset(dataset, style)
    where = f" {where}" if where else ""
    if dataset == "shapes":
        return (f"Ours: {ours}, percent; the paper's: {paper or 'its own benchmark'}{where}. "
                "ShapeRef is an analogue of the benchmark, not the same test: compare "
                "orderings, not values.")
    if paper is None:
        return (f"Ours: {ours}, percent; none of the papers reports on this benchmark, so the "
                "paper columns stay empty.")
    return (f"Ours: {ours}, percent; a paper's number beside it is of the same benchmark, "
            f"{paper}{where}; an empty paper cell: the paper has no number there.")


# ---------------------------------------------------------------------------------------------
# The registry of reports
# ---------------------------------------------------------------------------------------------

ReportBuilder = Callable[[pd.DataFrame, Path], list[Path]]
REPORT_BUILDERS: dict[str, ReportBuilder] = {}


def register_report(name: str) -> Callable[[ReportBuilder], ReportBuilder]:
    """Decorator: ``@register_report("dmn")`` over ``builder(records, out_dir) -> paths``.

    A builder receives every record (``latest_records``), selects its own, writes its tables
    and figures under ``out_dir`` and returns their paths; with no record of its models it
    writes nothing and returns ``[]``.
    """

    def add(builder: ReportBuilder) -> ReportBuilder:
        _check_name(name)
        if name in REPORT_BUILDERS:
            raise ValueError(f"report {name!r} is already registered")
        REPORT_BUILDERS[name] = builder
        return builder

    return add


def build_reports(records: pd.DataFrame, out_dir: str | Path | None = None,
                  names: Sequence[str] | None = None) -> list[Path]:
    """Regenerate every registered report (or ``names``) from ``records``; write the index.

    Returns the written paths, ``README.md`` last. A pure function of ``records``: the same
    records give byte-identical files. Records whose key the library does not know
    (``unknown_notes``) are named in a ``RecordWarning`` and in the index.
    """
    unknown = sorted(set(names or ()) - set(REPORT_BUILDERS))
    if unknown:
        raise ValueError(f"unknown report(s) {unknown}; registered: {sorted(REPORT_BUILDERS)}")
    out = _out_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = with_scale(records)  # the scale from every record: a stage's is found for any table
    notes = unknown_notes(runs)
    for note in notes:
        warnings.warn(note, RecordWarning, stacklevel=2)
    written: list[Path] = []
    for name in names or REPORT_BUILDERS:
        written += REPORT_BUILDERS[name](runs, out)
    return [*written, write_index(written, out, notes)]


def _title_of(markdown: Path) -> str:
    first = markdown.read_text(encoding="utf-8").splitlines()[0]
    return first.removeprefix("# ").strip()


def write_index(written: Sequence[Path], out_dir: Path, unknown: Sequence[str] = ()) -> Path:
    """``<out_dir>/README.md``: a list of the generated tables and figures, linked, after the
    notes ``unknown`` (``unknown_notes``) on records the library does not know."""
    lines = ["# Reports", "",
             "Generated by `refseg_lib.reports.build_reports` from the run records in `runs/`:",
             "do not edit by hand, regenerate. Tables named `NN_*` are written by notebook NN",
             "itself and are not listed here.", ""]
    if unknown:
        lines += ["Records the library does not know (the catalogue `runs_*` lists them, with a "
                  "note):", "", *(f"- {note}" for note in unknown), ""]
    tables = sorted(p for p in written if p.suffix == ".md")
    figures = sorted(p for p in written if p.suffix == ".png")
    if not tables and not figures:
        lines.append("No report yet: no run record belongs to a registered report "
                     f"({', '.join(REPORT_BUILDERS)}).")
    for path in tables:
        csv = path.with_suffix(".csv")
        data = f" ([CSV]({csv.name}))" if csv in written else ""
        lines.append(f"- [{_title_of(path)}]({path.name}){data}")
    if figures:
        lines += ["", "Figures:", ""]
        lines += [f"- [{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in figures]
    return atomic_write_text(out_dir / "README.md", "\n".join(lines) + "\n")


def write_model_tables(records: pd.DataFrame, out_dir: Path, prefix: str, models: list[str],
                       tables: Callable[[pd.DataFrame], dict[str, pd.DataFrame]],
                       titles: Mapping[str, str], notes: Callable[[str, str, str], Sequence[str]],
                       *, both_styles: bool = False) -> list[Path]:
    """Write ``tables(records of models)`` as ``<prefix>_<name>_<benchmark>-<profile>`` for each
    benchmark and profile, with ``notes(dataset, style, profile)`` and the records' provenance.
    On ShapeRef (``shapes``) the ablations are ``refshape`` runs: the other styles' records (the
    leaderboard's) are left out, except ``refshape+`` with ``both_styles``. A REFER dataset's
    records are grouped by split scheme (``refcoco-unc``; ``refcoco`` for records without one)."""
    written = []
    for (dataset, profile), group in records.groupby(["dataset", "profile"]):
        related = group[group["model"].isin(models)]
        if dataset == "shapes":
            kept = ("", "refshape", "refshape+") if both_styles else ("", "refshape")
            parts = {("refshape", dataset): related[related["style"].isin(kept)]}
        else:
            parts = {(style, f"{dataset}-{style}" if style else dataset): part
                     for style, part in related.groupby("style")}
        for (style, bench), part in parts.items():
            for name, table in tables(part).items():
                written += write_table(table, f"{prefix}_{name}_{bench}-{profile}",
                                       f"{titles[name]} ({profile} profile)",
                                       [*notes(dataset, style, profile),
                                        *provenance_notes(part)], out_dir)
    return written
