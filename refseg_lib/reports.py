"""Run records -> tables beside the papers' numbers -> Markdown, CSV and PNG under ``reports/``.

Reports are a pure function of the run records (ARCHITECTURE.md, "Contracts"):
``build_reports(records)`` rewrites every report from a DataFrame of records, one row per
record with its metrics flattened into columns (what ``refseg_lib.records.load_run_records``
returns), and the same records always give the same bytes: no timestamps, fixed float
formats, PNGs saved without the software version.

Conventions, chosen once for every report:

- Our metrics are fractions in [0, 1] (``refseg_lib.metrics``); the papers print percentages.
  Where the two stand side by side (``beside_paper``) both are shown in percent, and the
  column headers say "(%)". Tables of ours alone keep fractions.
- A paper number is only ever set beside ours of the same metric: ``overall_iou`` beside
  "overall IoU", ``mean_iou`` beside "mean IoU" (``refseg_lib.paper_numbers``); a paper that
  does not report our metric leaves an empty cell.
- Data keep full precision; numbers are rounded only when a table is written.
- Several records of one run (same model, variant, dataset, style, split and profile): the
  newest by ``created`` wins.
- Rows and columns are sorted: splits in the order train, val, testA, testB, test; everything
  else alphabetically, unless an explicit order is given.

Figures are ``matplotlib.figure.Figure`` objects made without pyplot: no backend to choose and
no global state, so they work headless (Agg) and display in a notebook as a cell's value.

New reports register a builder with ``@register_report("name")``; ``build_reports`` runs them
all and writes the index ``reports/README.md``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from refseg_lib.metrics import PRIMARY_THRESHOLD
from refseg_lib.paper_numbers import (
    GREF_GOOGLE,
    OVERALL_IOU,
    REFERIT,
    UNC,
    UNC_PLUS,
    paper_numbers,
)
from refseg_lib.paths import reports_dir

RUN_KEYS = ("model", "variant", "dataset", "style", "split", "profile")
PROVENANCE_KEYS = ("source", "created", "git_revision")
SPLIT_ORDER = ("train", "val", "testA", "testB", "test")
MISSING = "—"  # a cell with no number (Markdown) or a row with no paper counterpart
MD_FLOAT_FORMAT = ".2f"  # Markdown: two decimals, as the papers print percentages
CSV_FLOAT_FORMAT = "%.4f"  # CSV: four decimals, enough to recompute differences
FIGURE_DPI = 120

# Our metric names (run records) -> the papers' (refseg_lib.paper_numbers), by base name.
_PAPER_METRIC = {"overall_iou": "overall IoU", "mean_iou": "mean IoU", "IE": "IE"}


# ---------------------------------------------------------------------------------------------
# Metric names
# ---------------------------------------------------------------------------------------------


def paper_metric(name: str) -> str | None:
    """The papers' name of our metric ``name``, or None when it is not a percentage metric.

    ``overall_iou`` -> "overall IoU", ``mean_iou`` -> "mean IoU", ``Pr@0.7`` -> "Pr@0.7",
    ``Acc@0.5`` (boxes) -> "box Acc@0.5", ``IE`` -> "IE". A threshold suffix such as
    ``mean_iou@0.35`` (MCN's binarisation threshold) keeps the metric: "mean IoU".
    """
    base, *rest = name.split("@")
    if base in _PAPER_METRIC:
        return _PAPER_METRIC[base]
    if base == "Pr" and rest:
        return f"Pr@{rest[0]}"
    if base == "Acc" and rest:
        return f"box Acc@{rest[0]}"
    return None


# ---------------------------------------------------------------------------------------------
# Records -> tables
# ---------------------------------------------------------------------------------------------


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def latest_records(records: pd.DataFrame, keys: Sequence[str] = RUN_KEYS) -> pd.DataFrame:
    """``records`` with one row per run: the newest (by ``created``) of each ``keys`` group.

    Key and provenance columns are filled in as strings ("" where a record has none), so a
    record without ``style`` or ``variant`` still has a row. Rows come sorted by ``keys``.
    """
    frame = records.copy()
    for column in (*RUN_KEYS, *PROVENANCE_KEYS):
        if column not in frame.columns:
            frame[column] = ""
        frame[column] = [("" if _is_missing(v) else str(v)) for v in frame[column]]
    frame = frame.sort_values(["created", "source", "git_revision"], kind="mergesort")
    frame = frame.drop_duplicates(list(keys), keep="last")
    return frame.sort_values(list(keys), kind="mergesort").reset_index(drop=True)


def _require_columns(frame: pd.DataFrame, needed: Iterable[str], what: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: no column(s) {missing} in the records; available: "
                         f"{', '.join(map(str, frame.columns))}")


def _sort_key(value: Hashable) -> tuple:
    """Numbers numerically, then everything else as text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _ranker(order: Mapping[str, Sequence]) -> Callable[[pd.Index], pd.Index]:
    """A ``sort_index`` key: values listed in ``order[level]`` first, in that order."""

    def rank(values: pd.Index) -> pd.Index:
        wanted = list(order.get(values.name, SPLIT_ORDER if values.name == "split" else ()))
        first = {v: i for i, v in enumerate(wanted)}
        unique = sorted(set(values), key=lambda v: (first.get(v, len(first)), _sort_key(v)))
        position = {v: i for i, v in enumerate(unique)}
        return pd.Index([position[v] for v in values], name=values.name)

    return rank


def sort_table(table: pd.DataFrame, order: Mapping[str, Sequence] | None = None) -> pd.DataFrame:
    """Rows and columns in a fixed order: ``order[level name]`` first, then sorted."""
    rank = _ranker(order or {})
    return table.sort_index(axis=0, key=rank).sort_index(axis=1, key=rank)


def results_table(records: pd.DataFrame, index: Sequence[str] = ("model", "variant"),
                  columns: Sequence[str] = ("split",), metric: str | Sequence[str] = "overall_iou",
                  order: Mapping[str, Sequence] | None = None) -> pd.DataFrame:
    """Our numbers as a pivot: one row per ``index`` value, one column per ``columns`` value.

    ``metric`` is one metric name (cells are its values) or several (then they form the
    outer column level, named ``"metric"``; with ``columns=()`` the columns are the metrics).
    ``order`` maps a level name to the order of its values (default: splits train, val, testA,
    testB, test; the rest sorted). Values stay unrounded fractions. Cells no record fills are
    NaN: a missing run is a missing number, not an error. Two runs landing in one cell are an
    error (add the field that tells them apart, e.g. ``dataset``, to ``index`` or
    ``columns``, or filter the records first).
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    index, columns = list(index), list(columns)
    frame = latest_records(records)
    _require_columns(frame, [*index, *columns, *metrics], "results_table")
    clash = frame[frame.duplicated(index + columns, keep=False)]
    if not clash.empty:
        raise ValueError(
            f"several runs share a cell of index={index} columns={columns}:\n"
            f"{clash[list(RUN_KEYS)].to_string(index=False)}\n"
            "add the field that separates them to index or columns, or filter the records")
    table = frame.set_index(index + columns)[metrics].astype(float)
    table.columns.name = "metric"
    if columns:
        table = table.unstack(columns)
        if len(metrics) == 1:
            table = table.droplevel("metric", axis=1)
    return sort_table(table, {"metric": metrics, **(order or {})})


def drop_constant_levels(table: pd.DataFrame, keep: Sequence[str] = ()
                         ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Drop the row-index levels that hold one value (except ``keep``); return them too.

    A report then says "profile quick" once in its notes instead of on every row.
    """
    if not isinstance(table.index, pd.MultiIndex):
        return table, {}
    constant = {name: table.index.get_level_values(name)[0] for name in table.index.names
                if name not in keep and table.index.get_level_values(name).nunique() <= 1}
    if len(constant) == table.index.nlevels:  # keep at least one level
        constant.pop(table.index.names[0])
    return table.droplevel(list(constant)), constant


# ---------------------------------------------------------------------------------------------
# Ours beside the papers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperRef:
    """A row of a paper's table; ``dataset`` / ``split`` narrow it where the row has several."""

    paper: str
    table: str
    row: str
    dataset: str | None = None
    split: str | None = None

    def label(self) -> str:
        where = " ".join(p for p in (self.dataset, self.split) if p)
        return f"{self.paper} {self.table}, row {self.row!r}" + (f" ({where})" if where else "")


def _as_ref(ref: PaperRef | Sequence[str]) -> PaperRef:
    return ref if isinstance(ref, PaperRef) else PaperRef(*ref)


def _paper_value(ref: PaperRef, metric: str, split: str | None) -> tuple[float, str]:
    """The one number of ``ref`` for ``metric`` and where it was measured (NaN, "" if none)."""
    filters = {"row": ref.row, "metric": metric, "dataset": ref.dataset,
               "split": split or ref.split}
    found = paper_numbers(ref.paper, ref.table, **{k: v for k, v in filters.items() if v})
    if len(found) > 1:
        raise ValueError(f"{ref.label()} has {len(found)} numbers for {metric!r} (datasets "
                         f"{sorted(set(found.dataset))}, splits {sorted(set(found.split))}); "
                         "give the PaperRef a dataset and split")
    if found.empty:
        return math.nan, ""
    if found.unit[0] != "%":
        raise ValueError(f"{ref.label()}: {metric!r} is in {found.unit[0]!r}, not percent")
    where = found.dataset[0] if split else f"{found.dataset[0]} {found.split[0]}"
    return float(found.value[0]), where


def beside_paper(ours: pd.DataFrame, mapping: Mapping[Hashable, PaperRef | Sequence[str]], *,
                 by: str = "metric", metric: str | None = None) -> pd.DataFrame:
    """``ours`` with the papers' numbers beside it, both in percent, and the source of each row.

    ``ours`` has one column level: our metric names (``by="metric"``, e.g. the table of
    ``results_table(..., columns=(), metric=[...])``) or splits (``by="split"``, with
    ``metric`` naming the metric of every cell). ``mapping`` sends a row key of ``ours`` (a
    tuple for a MultiIndex) to a ``PaperRef`` or a tuple ``(paper, table, row[, dataset[,
    split]])``. Columns: ``("ours (%)", c)`` and ``("paper (%)", c)`` for each column ``c``
    of ``ours``, then ``("source", "")``: paper, table, row and where the paper measured it,
    e.g. "DMN Table 1: Only VM (UNC (RefCOCO) testA)". A row with no paper counterpart gets
    NaN and the source "—"; so does a metric or split the paper does not report.
    """
    if isinstance(ours.columns, pd.MultiIndex):
        raise ValueError("beside_paper takes a table with one column level (metrics or splits)")
    if by not in ("metric", "split") or (by == "split") != (metric is not None):
        raise ValueError("use by='metric' (columns are metrics) or by='split' with metric=...")
    metrics = {c: paper_metric(metric if by == "split" else str(c)) for c in ours.columns}
    if None in metrics.values():
        raise ValueError(f"beside_paper compares percentage metrics (IoUs, Pr@X, Acc@X, IE); "
                         f"got {metric or [c for c, m in metrics.items() if m is None]}")
    if not ours.index.is_unique:
        raise ValueError("beside_paper needs one row per key; the table's index repeats keys")
    rows = {key: i for i, key in enumerate(ours.index)}
    paper = pd.DataFrame(math.nan, index=ours.index, columns=ours.columns)
    source = pd.Series(MISSING, index=ours.index, dtype=object)
    for key, given in mapping.items():
        ref = _as_ref(given)
        if key not in rows:
            raise ValueError(f"mapping key {key!r} is not a row of the table; rows: {list(rows)}")
        if by == "split" and ref.split:
            raise ValueError(f"{ref.label()}: with by='split' the split comes from the columns")
        found = [_paper_value(ref, metrics[c], str(c) if by == "split" else None)
                 for c in ours.columns]
        where = sorted({w for _, w in found if w})
        if not where:
            raise ValueError(f"{ref.label()} reports none of {sorted(set(metrics.values()))}")
        paper.iloc[rows[key]] = [value for value, _ in found]
        source.iloc[rows[key]] = f"{ref.paper} {ref.table}: {ref.row} ({'; '.join(where)})"
    table = pd.concat({"ours (%)": ours.astype(float) * 100.0, "paper (%)": paper}, axis=1)
    table[("source", "")] = source
    return table


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
    Nothing time-dependent is written, so the same table gives the same bytes.
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
    md_path, csv_path = out / f"{name}.md", out / f"{name}.csv"
    md_path.write_text(markdown, encoding="utf-8", newline="\n")
    flat.to_csv(csv_path, index=False, float_format=CSV_FLOAT_FORMAT, lineterminator="\n",
                encoding="utf-8")
    return md_path, csv_path


def bar_plot(data: pd.DataFrame, x: str, y: str, hue: str | None = None, *,
             title: str | None = None, ylabel: str | None = None,
             order: Sequence | None = None, hue_order: Sequence | None = None,
             size: tuple[float, float] = (6.4, 3.6)) -> Figure:
    """Bars of ``y`` per ``x`` (and ``hue``) from a long-format DataFrame.

    Pass one row per bar: rows sharing ``x`` and ``hue`` would be averaged (seaborn's
    estimator; no error bars are drawn). ``order`` / ``hue_order`` default to sorted values,
    so the picture does not depend on the order of the rows.
    """
    _require_columns(data, [c for c in (x, y, hue) if c], "bar_plot")
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    sns.barplot(data=data, x=x, y=y, hue=hue, ax=ax, errorbar=None,
                order=order or sorted(set(data[x]), key=_sort_key),
                hue_order=(hue_order or sorted(set(data[hue]), key=_sort_key)) if hue else None)
    ax.set_ylabel(ylabel or y)
    _slant_labels(ax)
    if title:
        ax.set_title(title)
    if hue:
        ax.legend(title=hue, fontsize=8, title_fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0))  # outside the axes: never over a bar
    return fig


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
    into PNGs, so the same figure gives the same file.
    """
    _check_name(name)
    folder = _out_dir(out_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    return path


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
    """Notes naming the threshold and the run records behind a table (grouped by source).

    Record files are named without their folder, so the notes do not depend on the machine.
    """
    frame = latest_records(records)
    thresholds = _thresholds(frame)
    notes = [f"Masks binarised at probability > {PRIMARY_THRESHOLD:g} (the library's fixed "
             "threshold; a metric suffixed @t uses t)"
             + (f"; the runs evaluated thresholds {', '.join(thresholds)}." if thresholds
                else ".")]
    groups = frame.groupby(["source", "profile", "git_revision"], sort=True)
    for (source, profile, revision), runs in groups:
        created = sorted(runs["created"])
        when = created[0] if created[0] == created[-1] else f"{created[0]} to {created[-1]}"
        files = sorted(Path(p).name for p in runs.get("path", ()) if isinstance(p, str) and p)
        notes.append(f"{len(runs)} run record(s) from {source or 'an unnamed source'} "
                     f"(profile {profile or '?'}, git {revision or '?'}, created {when or '?'})"
                     + (f": {', '.join(files)}." if files else "."))
    return notes


# ---------------------------------------------------------------------------------------------
# The registry of reports
# ---------------------------------------------------------------------------------------------

ReportBuilder = Callable[[pd.DataFrame, Path], list[Path]]
REPORT_BUILDERS: dict[str, ReportBuilder] = {}


_WITH_LEADERBOARD: set[str] = set()  # reports that also read notebook 09's leaderboard runs


def register_report(name: str, *, leaderboard: bool = False
                    ) -> Callable[[ReportBuilder], ReportBuilder]:
    """Decorator: ``@register_report("dmn")`` over ``builder(records, out_dir) -> paths``.

    A builder receives every record (``latest_records``), selects its own, writes its tables
    and figures under ``out_dir`` and returns their paths; with no record of its models it
    writes nothing and returns ``[]``. Notebook 09's leaderboard runs (variants with
    ``experiments.LEADERBOARD_SUFFIX``) reach only the builders registered with
    ``leaderboard=True``: the per-paper reports stay those of their own notebooks.
    """

    def add(builder: ReportBuilder) -> ReportBuilder:
        _check_name(name)
        if name in REPORT_BUILDERS:
            raise ValueError(f"report {name!r} is already registered")
        REPORT_BUILDERS[name] = builder
        if leaderboard:
            _WITH_LEADERBOARD.add(name)
        return builder

    return add


def build_reports(records: pd.DataFrame, out_dir: str | Path | None = None,
                  names: Sequence[str] | None = None) -> list[Path]:
    """Regenerate every registered report (or ``names``) from ``records``; write the index.

    Returns the written paths, ``README.md`` last. A pure function of ``records``: the same
    records give byte-identical files.
    """
    unknown = sorted(set(names or ()) - set(REPORT_BUILDERS))
    if unknown:
        raise ValueError(f"unknown report(s) {unknown}; registered: {sorted(REPORT_BUILDERS)}")
    out = _out_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from refseg_lib.experiments import LEADERBOARD_SUFFIX

    runs = latest_records(records)
    own = runs[~runs["variant"].astype(str).str.contains(LEADERBOARD_SUFFIX, regex=False)]
    written: list[Path] = []
    for name in names or REPORT_BUILDERS:
        written += REPORT_BUILDERS[name](runs if name in _WITH_LEADERBOARD else own, out)
    return [*written, write_index(written, out)]


def _title_of(markdown: Path) -> str:
    first = markdown.read_text(encoding="utf-8").splitlines()[0]
    return first.removeprefix("# ").strip()


def write_index(written: Sequence[Path], out_dir: Path) -> Path:
    """``<out_dir>/README.md``: a list of the generated tables and figures, linked."""
    lines = ["# Reports", "",
             "Generated by `refseg_lib.reports.build_reports` from the run records in `runs/`:",
             "do not edit by hand, regenerate. Tables named `NN_*` are written by notebook NN",
             "itself and are not listed here.", ""]
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
    path = out_dir / "README.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")
    return path


# ---------------------------------------------------------------------------------------------
# Report: baselines (an image-only model and LSTM-CNN)
# ---------------------------------------------------------------------------------------------

BASELINE_MODELS = ("only_vm", "lstm_cnn")
BASELINE_METRICS = ("overall_iou", "mean_iou", "Pr@0.5")
_ONLY_VM = PaperRef("DMN", "Table 1", "Only VM")
_LSTM_CNN_REFERIT = PaperRef("CMSA", "Table 1", "LSTM-CNN [10]", split="test")


def benchmark_label(dataset: str, style: str) -> str:
    """``"refcoco"``, or ``"shapes/refshape+"`` for ShapeRef's styles."""
    return f"{dataset}/{style}" if style else dataset


def _baseline_paper_row(row: Mapping[str, str]) -> PaperRef | None:
    """The paper row a baseline run corresponds to, or None.

    Only VM: DMN Table 1 (UNC testA) beside our testA on RefCOCO and on its ShapeRef analogue
    ``refshape``. LSTM-CNN: only ReferIt test (CMSA Table 1 = DMN Table 2); no paper of ours
    quotes its UNC numbers.
    """
    model, benchmark, split = row.get("model"), row.get("benchmark"), row.get("split")
    if model == "only_vm" and split == "testA" and benchmark in ("refcoco", "shapes/refshape"):
        return _ONLY_VM
    if model == "lstm_cnn" and split == "test" and benchmark == "refclef":
        return _LSTM_CNN_REFERIT
    return None


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
    runs = records[records["model"].isin(BASELINE_MODELS)]
    if runs.empty:
        return []
    runs = runs.assign(benchmark=[benchmark_label(d, s) for d, s in
                                  zip(runs["dataset"], runs["style"], strict=True)])
    ours = results_table(runs, index=("model", "variant", "benchmark", "split", "profile"),
                         columns=(), metric=BASELINE_METRICS)
    ours, constant = drop_constant_levels(ours, keep=("model", "benchmark", "split"))
    rows = _row_dicts(ours, constant)
    mapping = {key: ref for key, row in rows.items() if (ref := _baseline_paper_row(row))}
    table = beside_paper(ours, mapping)
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
    order = ours.index.droplevel(run_levels).unique().sort_values(key=_ranker({}))
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
    lstm_cnn = PaperRef("CMSA", "Table 1", "LSTM-CNN [10]")
    return [
        "Metrics: overall IoU (total intersection / total union over the split), mean IoU "
        "(average of per-sample IoUs) and Pr@0.5 (share of samples with IoU >= 0.5); ours "
        "and the papers' both in percent.",
        *([f"All rows: {same}."] if same else []),
        "only_vm: the visual model alone, no sentence (DMN's 'Only VM', a salient-object "
        "prior). Its paper columns are DMN Table 1 row 1 (UNC testA: overall IoU "
        f"{_quoted(_ONLY_VM, OVERALL_IOU)}, Pr@0.5 {_quoted(_ONLY_VM, 'Pr@0.5')}; DMN reports "
        "no mean IoU), set beside our testA rows of RefCOCO and of ShapeRef's refshape, which "
        "is an analogue of UNC, not the same benchmark.",
        "lstm_cnn: Hu, Rohrbach, Darrell, 'Segmentation from natural language expressions', "
        "ECCV 2016. Its UNC numbers are not in our papers: DMN Table 2 and CMSA Table 1 quote "
        f"only G-Ref (Google split) val {_quoted(lstm_cnn, OVERALL_IOU, dataset=GREF_GOOGLE)} "
        f"and ReferIt test {_quoted(lstm_cnn, OVERALL_IOU, dataset=REFERIT)}, so its paper "
        "columns stay empty except on ReferIt (refclef) test.",
        *provenance_notes(runs),
    ]


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
    runs = records[(records["model"] == "dmn")
                   | ((records["model"] == "only_vm") & (records["variant"] == "base"))]
    if not (runs["model"] == "dmn").any():
        return []
    written = []
    for (dataset, style, profile), group in runs.groupby(["dataset", "style", "profile"]):
        suffix = f"{dataset}-{style}-{profile}" if style else f"{dataset}-{profile}"
        keyed = group.set_index(["model", "variant"]).index
        rows = group[[key in DMN_TABLE_1_RUNS for key in keyed]]
        table_1 = results_table(rows.assign(row=[DMN_TABLE_1_RUNS[k] for k in zip(
            rows["model"], rows["variant"], strict=True)]), index=("row", "split"), columns=(),
            metric=DMN_METRICS, order={"row": list(DMN_TABLE_1_RUNS.values())})
        mapping = {(row, split): PaperRef("DMN", "Table 1", row)
                   for row, split in table_1.index if split == "testA"}
        bench = benchmark_label(dataset, style)
        md, csv = write_table(
            beside_paper(table_1, mapping), f"dmn_table1_{suffix}",
            f"DMN Table 1 on {bench} ({profile} profile) beside the paper's (UNC testA)",
            _dmn_notes(group), out_dir)
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


def _dmn_notes(runs: pd.DataFrame) -> list[str]:
    return [
        "Ours: overall IoU and Pr@X in percent on each split; the paper's: UNC (RefCOCO) "
        "testA, set beside our testA (ShapeRef's testA is an analogue, not the same test).",
        "DMN rows: two training stages (low resolution, then the upsampling module); Only VM "
        "is the image-only baseline of notebook 00b, trained with the full quick budget.",
        *provenance_notes(runs),
    ]


def _write_model_tables(records: pd.DataFrame, out_dir: Path, prefix: str, models: list[str],
                        tables: Callable[[pd.DataFrame], dict[str, pd.DataFrame]],
                        titles: Mapping[str, str], notes: Sequence[str], *,
                        both_styles: bool = False) -> list[Path]:
    """Write ``tables(records of models)`` as ``<prefix>_<name>_<dataset>-<profile>`` for each
    benchmark and profile, with ``notes`` and the records' provenance; the ``refshape+`` records
    are left out unless ``both_styles``."""
    written = []
    for (dataset, profile), group in records.groupby(["dataset", "profile"]):
        related = group[group["model"].isin(models)]
        if not both_styles:
            related = related[related["style"] != "refshape+"]
        for name, table in tables(related).items():
            written += write_table(table, f"{prefix}_{name}_{dataset}-{profile}",
                                   f"{titles[name]} ({profile} profile)",
                                   [*notes, *provenance_notes(related)], out_dir)
    return written


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


def versus_table(runs: pd.DataFrame, rows: Mapping[tuple[str, str], str]
                 ) -> pd.DataFrame | None:
    """Overall IoU (%) per split of the runs ``rows`` names by (model, variant), on the style
    with location words (not ``refshape+``); None when none of them is recorded."""
    keyed = pd.Series(list(zip(runs["model"], runs["variant"], strict=True)), index=runs.index)
    chosen = runs[keyed.isin(list(rows)) & (runs["style"] != "refshape+")]
    if chosen.empty:
        return None
    labels = [rows[k] for k in zip(chosen["model"], chosen["variant"], strict=True)]
    return results_table(chosen.assign(row=labels), index=("row",), metric="overall_iou",
                         order={"row": list(rows.values())}) * 100


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
                    & (cmsa["style"] != "refshape+")]
        if rows.empty:
            continue
        ours = results_table(rows.assign(row=rows["variant"].map(mapping)), index=("row",),
                             columns=(), metric=metrics, order={"row": list(mapping.values())})
        tables[name] = beside_paper(ours, {r: PaperRef("CMSA", table, r) for r in ours.index})
    versus = versus_table(runs, CMSA_VERSUS_RUNS)
    if versus is not None:
        tables["versus"] = versus
    base = cmsa[cmsa["variant"] == "base"]
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
             "Quick profile: CMSA variants train 3000 steps (experiments.CMSA_STEPS), DMN 3000 + "
             "500 in two stages, LSTM-CNN 5000.",
             "One-level rows (Table 2, CMSA-W, CMSA-S) read the paper's res5 at stride 8; the "
             "quick profile reads its stride-8 level (CMSAConfig.single_level)."]
    return _write_model_tables(records, out_dir, "cmsa", ["cmsa", "dmn", "lstm_cnn"],
                               cmsa_tables, titles, notes, both_styles=True)


# ---------------------------------------------------------------------------------------------
# Report: MCN (Tables 1-3, REC beside RES, against the other models)
# ---------------------------------------------------------------------------------------------

# Our MCN records (variant, with the post-processing suffix of run_mcn) -> the paper's rows
MCN_TABLE_1_RUNS = {"cem": "w.o. post-processing", "cem+roi": "RoI Crop [10, 30]",
                    "cem+soft_nls": "Soft-NLS (ours)", "cem+asnls": "ASNLS (ours)"}
MCN_TABLE_2_RUNS = {"base": "MCN (Base)", "text_att": "+TextAtt", "garan": "+GARAN",
                    "cem": "+CEM", "cem+asnls": "+ASNLS", "cem_code": "+CEM (code's form)",
                    "cem_code+asnls": "+ASNLS (code's CEM)"}
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
    in the paper. Notebook 06 shows these and the ``mcn`` report writes them."""
    runs = latest_records(records)
    mcn = runs[(runs["model"] == "mcn") & (runs["split"] == "val")]
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
        ours = results_table(rows.assign(row=rows["variant"].map(mapping)), index=("row",),
                             columns=(), metric=present, order={"row": list(mapping.values())})
        if name == "table3" and f"mean_iou{at}" in ours:
            ours.loc[ours.index.str.startswith("Single_REC"), f"mean_iou{at}"] = math.nan
        refs = {r: PaperRef("MCN", table, r, UNC) for r in ours.index
                if "code" not in r}
        tables[name] = beside_paper(ours, refs)
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
    notes = ["Ours: ShapeRef refshape, percent; the paper's: RefCOCO (UNC) val. RES numbers are "
             "mean IoU with masks binarised at 0.35, MCN's protocol; REC is box Acc@0.5 (IoU > "
             "0.5). ShapeRef is an analogue of the benchmark, not the same test: compare "
             "orderings, not values.",
             "Quick profile: every MCN run trains 3000 steps (experiments.MCN_STEPS); '13^2' is "
             "the stride-32 map (2x2 at 64 px), '52^2' the stride-8 one (8x8).",
             "Rows +X (roi, soft_nls, asnls) are the +CEM run evaluated with that "
             "post-processing; the rows marked 'code' use the official code's CEM and have no "
             "paper counterpart."]
    return _write_model_tables(records, out_dir, "mcn", ["mcn", "cmsa", "dmn", "lstm_cnn"],
                               mcn_tables, titles, notes)


# ---------------------------------------------------------------------------------------------
# Report: M3Att (the ablation, the LFR probe, the survey's main row, against the other models)
# ---------------------------------------------------------------------------------------------

# Our M3Att records -> the ablation's rows (models.m3att.VARIANTS, experiments.run_m3att)
M3ATT_ABLATION_RUNS = {"vanilla": "Vanilla decoder (cross-attention)", "m3dec": "+M3Att/M3Dec",
                       "imi": "+IMI", "lfr": "+LFR (full model)",
                       "lfr-minilm": "+LFR, MiniLM words (fixed)"}
M3ATT_PROBES = ("word_recovery", "word_recovery_input", "bag_recovery")
M3ATT_MAIN_ROW = PaperRef("M3Att", "Survey Table 2", "M3Att [99] [TIP'23]", UNC)
M3ATT_VERSUS_RUNS = {**MCN_VERSUS_RUNS, ("m3att", "lfr"): "M3Att"}


def m3att_tables(records: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Ours in percent: ``ablation`` (val, beside the paper's ablation, which could not be read:
    every paper cell is empty), ``probe`` (the word-recovery probes of each row, val), ``orders``
    (val overall IoU and word recovery of the rows also trained in other data orders), ``main``
    (the full model on every split beside the survey's RefCOCO row) and ``versus`` (the
    course's models on one harness). Notebook 07 shows these and the ``m3att`` report writes
    them."""
    runs = latest_records(records)
    m3att = runs[runs["model"] == "m3att"]
    val = m3att[(m3att["split"] == "val") & m3att["variant"].isin(M3ATT_ABLATION_RUNS)]
    tables = {}
    if not val.empty:
        labelled = val.assign(row=val["variant"].map(M3ATT_ABLATION_RUNS))
        order = {"row": list(M3ATT_ABLATION_RUNS.values())}
        ours = results_table(labelled, index=("row",), columns=(),
                             metric=["overall_iou", "mean_iou", "Pr@0.5", "Pr@0.7", "Pr@0.9"],
                             order=order)
        tables["ablation"] = beside_paper(ours, {})
        probes = [p for p in M3ATT_PROBES if p in labelled]
        if probes:
            tables["probe"] = results_table(labelled, index=("row",), columns=(),
                                            metric=probes, order=order) * 100
    # the same rows retrained in another data order (run_m3att(v, suffix="-order1",
    # train_overrides={"seed": 1}): same data and initial weights, other batches and dropout)
    val_all = m3att[m3att["split"] == "val"].astype({"variant": str})
    parts = val_all["variant"].str.extract(r"^(?P<base>.+?)(?:-order(?P<order>\d+))?$")
    repeated = parts["base"].isin(set(parts.loc[parts["order"].notna(), "base"]))
    repeated &= parts["base"].isin(M3ATT_ABLATION_RUNS)
    if repeated.any():
        rows = val_all[repeated].assign(
            row=parts.loc[repeated, "base"].map(M3ATT_ABLATION_RUNS),
            order="order " + parts.loc[repeated, "order"].fillna("0"))
        metrics = [m for m in ("overall_iou", "word_recovery") if m in rows]
        tables["orders"] = results_table(rows, index=("row",), columns=("order",),
                                         metric=metrics,
                                         order={"row": list(M3ATT_ABLATION_RUNS.values())}) * 100
    full = m3att[m3att["variant"] == "lfr"]
    if not full.empty:
        ours = results_table(full.assign(row="M3Att (ours: +LFR)"), index=("row",),
                             metric="overall_iou")
        tables["main"] = beside_paper(ours, {"M3Att (ours: +LFR)": M3ATT_MAIN_ROW}, by="split",
                                      metric="overall_iou")
    versus = versus_table(runs, M3ATT_VERSUS_RUNS) if not m3att.empty else None
    if versus is not None:
        tables["versus"] = versus
    return tables


@register_report("m3att")
def m3att_report(records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The M3Att ablation and LFR probe, its main row, and M3Att against the other models."""
    if not (records["model"] == "m3att").any():
        return []
    titles = {"ablation": "M3Att ablation (val) beside the paper's (not available here)",
              "probe": "LFR probe: words recovered from the decoder (val, %)",
              "orders": "M3Att ablation rows in two training orders (val, %)",
              "main": "M3Att full model beside its RefCOCO row (overall IoU)",
              "versus": "LSTM-CNN, DMN, CMSA+GF, MCN and M3Att on one harness "
                        "(overall IoU at 0.5, %)"}
    notes = ["Ours: ShapeRef refshape, percent. ShapeRef is an analogue of the benchmark, not "
             "the same test: compare orderings, not values.",
             "The paper's full text and ablation could not be read (notebook 07's design note): "
             "the model is our design from its abstract, and its only published numbers here "
             "are the main RefCOCO row quoted by the authors' survey (arXiv 2508.00265, "
             "Appendix Table 2), whose metric is uncertain.",
             "Quick profile: every M3Att run trains 3000 steps (experiments.M3ATT_STEPS); the "
             "MiniLM row keeps the pretrained encoder fixed.",
             "Probes (models.m3att.word_recovery): closed-form linear probes fitted on 2000 "
             "training expressions; word_recovery reads each word from the decoder's output, "
             "word_recovery_input from its input, bag_recovery the expression's words from the "
             "mean output word."]
    return _write_model_tables(records, out_dir, "m3att",
                               ["m3att", "mcn", "cmsa", "dmn", "lstm_cnn"], m3att_tables, titles,
                               notes)


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
    (val, both arms in each training order), ``splits`` (the curriculum run on every split),
    ``plural`` (the sentence-conditioned variant beside the unconditioned run, val). Notebook
    08 shows these and the ``ris`` report writes them."""
    runs = latest_records(records)
    ris = runs[runs["model"] == "ris"].astype({"variant": str})
    parts = ris["variant"].str.extract(r"^(?P<base>.+?)(?:-order(?P<order>\d+))?$")
    ris = ris.assign(base=parts["base"], row=parts["base"].map(RIS_RUNS),
                     order="order " + parts["order"].fillna("0"))
    ris = ris[ris["row"].notna()]
    metrics = [m for m in RIS_METRICS if m in ris]
    order = {"row": list(RIS_RUNS.values())}
    tables = {}
    arms = ris[(ris["split"] == "val") & ris["base"].isin(["all", "all-curriculum"])]
    if not arms.empty:
        tables["curriculum"] = _ris_percent(results_table(
            arms, index=("row", "order"), columns=(), metric=metrics, order=order))
    final = ris[(ris["base"] == "all-curriculum") & (ris["order"] == "order 0")]
    if not final.empty:
        tables["splits"] = _ris_percent(results_table(final, index=("row",), columns=("split",),
                                                      metric=metrics, order=order))
    plural = ris[(ris["split"] == "val") & (ris["order"] == "order 0")
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
    notes = ["Ours: ShapeRef scenes (3-6 objects), every object a class-agnostic instance "
             "(data.instances.InstanceTask); 'plural': the objects an expression such as 'all "
             "the red shapes' selects, our extension. Percent, except |DiC| (objects).",
             "count_acc: emitted count equals the number of objects (stopping at the first "
             "confidence < 0.5); sbd: symmetric best Dice; best_overlap: mean best IoU of each "
             "object; ap@0.5: AP^r at IoU 0.5 over every step ranked by confidence; "
             "overall_iou: the union of the emitted instances against the union of the objects.",
             "The paper's own tables (CVPPP leaves, Pascal VOC people) could not be read here "
             "(notebook 08): no paper column.",
             "Quick profile: every run trains 1500 steps (experiments.RIS_STEPS); with the "
             "curriculum, 400 of them unroll two steps per image."]
    return _write_model_tables(records, out_dir, "ris", ["ris"], ris_tables, titles, notes)


# The comparison of notebook 09 registers its reports from its own module (it reads the
# experiments' leaderboard settings, which import the training stack).
from refseg_lib import claims, comparison  # noqa: E402, F401
