"""Run records -> tables: metric names, the newest record of each run and its scale (expressions
evaluated, training steps against the recipe's budget), benchmarks and the papers' benchmark each
is set beside, tables of ours, ours beside the papers' numbers (``beside_paper``), one model
against the others (``versus_table``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from refseg_lib.data.refer import SPLIT_SCHEMES
from refseg_lib.data.shapes import STYLES
from refseg_lib.experiments import PROFILES, recipe_steps
from refseg_lib.models import list_models
from refseg_lib.paper_numbers import (
    RECORD_DATASETS,
    UNC,
    UNC_PLUS,
    paper_numbers,
)

RUN_KEYS = ("model", "variant", "dataset", "style", "split", "profile")
PROVENANCE_KEYS = ("source", "created", "git_revision")
SPLIT_ORDER = ("train", "val", "testA", "testB", "testC", "test")
MISSING = "—"  # a cell with no number (Markdown) or a row with no paper counterpart
MD_FLOAT_FORMAT = ".2f"  # Markdown: two decimals, as the papers print percentages
CSV_FLOAT_FORMAT = "%.4f"  # CSV: four decimals, enough to recompute differences
FIGURE_DPI = 120

# The untrained reference predictors (experiments.run_reference, ShapeRef only): every table
# that compares runs shows them as rows beside ours, the floors below and the ceiling above.
REFERENCE_ROWS = {("reference", "largest_object"): "floor: largest object (untrained)",
                  ("reference", "category_reader"): "floor: category reader (untrained)",
                  ("reference", "resolver"): "ceiling: resolver (reads the scene)"}

# Our metric names (run records) -> the papers' (refseg_lib.paper_numbers), by base name.
_PAPER_METRIC = {"overall_iou": "overall IoU", "mean_iou": "mean IoU", "IE": "IE"}

# ShapeRef's expression styles -> the benchmark each imitates (notebook 00), whose paper numbers
# a ShapeRef run is set beside (refshape-g imitates G-Ref, whose split differs between papers).
SHAPES_ANALOGUES = {"refshape": UNC, "refshape+": UNC_PLUS}
# The scale of a run (``with_scale``): expressions evaluated per split, training steps of all
# stages, the recipe's budget for the run, and whether it trained below that budget.
SCALE = ("n", "steps", "recipe_steps", "short")
_REFER_NAMES = {"refcoco": "RefCOCO", "refcoco+": "RefCOCO+", "refcocog": "RefCOCOg",
                "refclef": "RefCLEF"}


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


def whole_budget(runs: pd.DataFrame, row: pd.Series) -> tuple[float, float]:
    """(steps, training seconds) of a run plus those of the stages before it: a record's
    ``config["init_from"]`` names the checkpoint ``<model>__<variant>__...`` it started from, whose
    record is the one of the same dataset, style, split and profile in ``runs``. An untrained
    reference predictor has (0, 0); a record without its training settings, or whose earlier
    stage has no record in ``runs``, NaN: its cost is unknown, not guessed."""
    config = row.get("config") if isinstance(row.get("config"), Mapping) else {}
    if "train" not in config:
        return (0.0, 0.0) if row.get("model") == "reference" else (math.nan, math.nan)
    steps = float(config["train"]["max_steps"])
    seconds = math.nan if _is_missing(row.get("train_time_s")) else float(row["train_time_s"])
    start = config.get("init_from")
    if start:
        model, variant = Path(start).name.split("__")[:2]
        same = (runs["model"] == model) & (runs["variant"] == variant)
        for key in ("dataset", "style", "split", "profile"):
            same &= runs[key] == row[key]
        if not same.any():
            return math.nan, math.nan
        more = whole_budget(runs, runs[same].iloc[0])
        steps, seconds = steps + more[0], seconds + more[1]
    return steps, seconds


def with_scale(records: pd.DataFrame) -> pd.DataFrame:
    """``latest_records(records)`` with the scale of each run (``SCALE``): ``n``, the expressions
    it evaluated (the metric ``n``, else ``config["eval_samples"]``), ``steps``, its training
    steps of all stages (``whole_budget``), ``recipe_steps``, what the course's recipe gives that
    run in its profile (``experiments.recipe_steps``), and ``short``: steps below the recipe's.

    Records that already carry these columns are returned as they are: ``build_reports`` adds
    them once from every record, so that a run's earlier stage is found even in a table that
    keeps only its final stage.
    """
    frame = latest_records(records)
    if set(SCALE) <= set(frame.columns):
        return frame
    configs = [c if isinstance(c, Mapping) else {} for c in
               frame.get("config", pd.Series([None] * len(frame), index=frame.index))]
    asked = pd.Series([c.get("eval_samples") for c in configs], index=frame.index, dtype=float)
    n = pd.to_numeric(frame["n"], errors="coerce") if "n" in frame else asked * math.nan
    steps = [whole_budget(frame, row)[0] for _, row in frame.iterrows()]
    recipe = [float(recipe_steps(m, v, p)) if p in PROFILES else math.nan
              for m, v, p in zip(frame["model"], frame["variant"], frame["profile"], strict=True)]
    return frame.assign(n=n.fillna(asked), steps=steps, recipe_steps=recipe,
                        short=[s < r for s, r in zip(steps, recipe, strict=True)])


def scale_table(runs: pd.DataFrame, index: Sequence[str]) -> pd.DataFrame:
    """The scale (``SCALE``) of the runs behind each row of a table indexed by ``index`` (as
    ``results_table``'s): n, or "least–most" where the row's records evaluated different numbers;
    the fewest steps and recipe steps of the row's records; short if any of them is."""

    def span(values: pd.Series) -> float | str:
        found = values.dropna()
        if found.nunique() > 1:
            return f"{found.min():.0f}–{found.max():.0f}"
        return float(found.iloc[0]) if len(found) else math.nan

    groups = with_scale(runs).groupby(list(index), sort=False)
    return pd.DataFrame({"n": groups["n"].agg(span), "steps": groups["steps"].min(),
                         "recipe_steps": groups["recipe_steps"].min(),
                         "short": groups["short"].any()})


def short_cell(short: object, steps: float, recipe: float) -> str | None:
    """A table's "short" cell: "yes: 5 of 900 steps" below the recipe's budget, "unknown" where
    the steps are, "no" otherwise; None (no cell) for a row whose scale is not known at all."""
    if _is_missing(steps) and _is_missing(recipe):
        return None
    if not _is_missing(short) and bool(short):
        return f"yes: {steps:.0f} of {recipe:.0f} steps"
    return "unknown" if _is_missing(steps) and recipe > 0 else "no"


def scale_cells(scale: pd.DataFrame, *, recipe: bool = False) -> pd.DataFrame:
    """``scale_table``'s numbers as a table shows them: ``n`` and ``steps`` as whole numbers
    (None where unknown), ``recipe steps`` with ``recipe``, and the ``short`` marker."""

    def whole(value: object) -> object:
        return None if _is_missing(value) else value if isinstance(value, str) else int(value)

    cells = {"n": [whole(v) for v in scale["n"]], "steps": [whole(v) for v in scale["steps"]]}
    if recipe:
        cells["recipe steps"] = [whole(v) for v in scale["recipe_steps"]]
    cells["short"] = [short_cell(s, float(t), float(r)) for s, t, r in
                      zip(scale["short"], scale["steps"], scale["recipe_steps"], strict=True)]
    return pd.DataFrame(cells, index=scale.index, dtype=object)


# ---------------------------------------------------------------------------------------------
# Benchmarks
# ---------------------------------------------------------------------------------------------


def record_scheme(dataset: str, style: str) -> str:
    """A record's split scheme (a REFER dataset: "unc", "google", "umd", "berkeley") or expression
    style (ShapeRef); "" (REFER records written before they carried their scheme) is the
    dataset's default scheme."""
    if style:
        return style
    return "refshape" if dataset == "shapes" else SPLIT_SCHEMES.get(dataset, ("",))[0]


def benchmark_label(dataset: str, style: str) -> str:
    """``"refcoco/unc"``, ``"shapes/refshape+"``; a record without a style: its dataset."""
    return f"{dataset}/{style}" if style else dataset


def benchmark_name(dataset: str, style: str) -> str:
    """The benchmark in words: "ShapeRef refshape", "RefCOCO (UNC split)"."""
    scheme = record_scheme(dataset, style)
    if dataset == "shapes":
        return f"ShapeRef {scheme}"
    split = scheme.upper() if scheme in ("unc", "umd") else scheme.capitalize()
    return f"{_REFER_NAMES.get(dataset, dataset)} ({split} split)" if scheme else dataset


def paper_dataset(dataset: str, style: str) -> str | None:
    """The papers' benchmark (a ``paper_numbers`` dataset name) a record of ``dataset`` /
    ``style`` is set beside: a REFER dataset's own under its split scheme
    (``paper_numbers.RECORD_DATASETS``), for ShapeRef the benchmark its style imitates
    (``SHAPES_ANALOGUES``); None where the papers report none."""
    scheme = record_scheme(dataset, style)
    if dataset == "shapes":
        return SHAPES_ANALOGUES.get(scheme)
    return RECORD_DATASETS.get((dataset, scheme))


def ablation_runs(runs: pd.DataFrame) -> pd.Series:
    """Which records the ablation tables read: on ShapeRef its ablation style ``refshape`` (the
    other styles are the leaderboard's), on a REFER dataset every record."""
    return (runs["dataset"] != "shapes") | runs["style"].isin(["", "refshape"])


# The parts of a record's key that the library may not know (``unknown_records``).
UNKNOWN_KINDS = ("model", "dataset", "benchmark", "split", "profile")


def known_keys() -> dict[str, list[str]]:
    """What a record's key may name for the papers' tables to place it, per ``UNKNOWN_KINDS``:
    the registered models and the reference predictors, ShapeRef and the REFER datasets, their
    benchmarks (ShapeRef's styles, the REFER split schemes; a record without a style is its
    dataset's default), the splits of ``SPLIT_ORDER`` and the profiles of
    ``experiments.PROFILES``."""
    schemes = {"shapes": STYLES, **SPLIT_SCHEMES}
    return {"model": sorted({*list_models(), *(m for m, _ in REFERENCE_ROWS)}),
            "dataset": list(schemes),
            "benchmark": [benchmark_label(d, s) for d, styles in schemes.items() for s in styles],
            "split": list(SPLIT_ORDER), "profile": list(PROFILES)}


def _unknown(known: Mapping[str, list[str]], model: str, dataset: str, style: str, split: str,
             profile: str) -> list[tuple[str, str]]:
    """(kind, value) of each part of a record's key that is not ``known``."""
    found = [(kind, value) for kind, value in (("model", model), ("dataset", dataset))
             if value not in known[kind]]
    if dataset in known["dataset"] and style and \
            benchmark_label(dataset, style) not in known["benchmark"]:
        found.append(("benchmark", benchmark_label(dataset, style)))
    return found + [(kind, value) for kind, value in (("split", split), ("profile", profile))
                    if value not in known[kind]]


def unknown_records(records: pd.DataFrame) -> pd.DataFrame:
    """The records (``latest_records``) whose key names what the library does not know: a model
    it does not register (nor a reference predictor), a dataset it cannot load, a ShapeRef style
    or REFER split scheme it lacks (``benchmark``), a split outside ``SPLIT_ORDER`` or a profile
    outside ``experiments.PROFILES``. One row per record and unknown part: ``kind`` (one of
    ``UNKNOWN_KINDS``), ``value`` and ``record``, the record's file name (its run key where the
    records hold no ``path``). A paper's table shows such a record at best without a paper's
    number or the recipe's budget beside it; the catalogue lists it, with a note.
    """
    known, rows = known_keys(), []
    for _, row in latest_records(records).iterrows():
        path = row.get("path")
        name = (Path(path).name if isinstance(path, str) and path else
                "/".join(row[k] for k in RUN_KEYS if row[k]))
        key = (row[k] for k in ("model", "dataset", "style", "split", "profile"))
        for kind, value in _unknown(known, *key):
            rows.append({"kind": kind, "value": value, "record": name})
    frame = pd.DataFrame(rows, columns=["kind", "value", "record"])
    rank = {k: i for i, k in enumerate(UNKNOWN_KINDS)}
    return frame.sort_values(["kind", "value", "record"], key=lambda c: c.map(rank)
                             if c.name == "kind" else c, kind="mergesort").reset_index(drop=True)


def require_columns(frame: pd.DataFrame, needed: Iterable[str], what: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: no column(s) {missing} in the records; available: "
                         f"{', '.join(map(str, frame.columns))}")


def sort_key(value: Hashable) -> tuple:
    """Numbers numerically, then everything else as text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def ranker(order: Mapping[str, Sequence]) -> Callable[[pd.Index], pd.Index]:
    """A ``sort_index`` key: values listed in ``order[level]`` first, in that order."""

    def rank(values: pd.Index) -> pd.Index:
        wanted = list(order.get(values.name, SPLIT_ORDER if values.name == "split" else ()))
        first = {v: i for i, v in enumerate(wanted)}
        unique = sorted(set(values), key=lambda v: (first.get(v, len(first)), sort_key(v)))
        position = {v: i for i, v in enumerate(unique)}
        return pd.Index([position[v] for v in values], name=values.name)

    return rank


def sort_table(table: pd.DataFrame, order: Mapping[str, Sequence] | None = None) -> pd.DataFrame:
    """Rows and columns in a fixed order: ``order[level name]`` first, then sorted."""
    rank = ranker(order or {})
    return table.sort_index(axis=0, key=rank).sort_index(axis=1, key=rank)


def results_table(records: pd.DataFrame, index: Sequence[str] = ("model", "variant"),
                  columns: Sequence[str] = ("split",), metric: str | Sequence[str] = "overall_iou",
                  order: Mapping[str, Sequence] | None = None) -> pd.DataFrame:
    """Our numbers as a pivot: one row per ``index`` value, one column per ``columns`` value.

    ``metric`` is one metric name (cells are its values) or several (then they form the
    outer column level, named ``"metric"``; with ``columns=()`` the columns are the metrics).
    ``order`` maps a level name to the order of its values (default: ``SPLIT_ORDER``; the rest
    sorted). Values stay unrounded fractions. Cells no record fills are NaN: a missing run is a
    missing number, not an error. Two runs landing in one cell are an error (add the field that
    tells them apart, e.g. ``dataset``, to ``index`` or ``columns``, or filter the records
    first).
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    index, columns = list(index), list(columns)
    frame = latest_records(records)
    require_columns(frame, [*index, *columns, *metrics], "results_table")
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


def paper_row(paper: str, table: str, row: str, dataset: str, style: str,
              split: str | None = None) -> PaperRef | None:
    """``PaperRef(paper, table, row)`` on the papers' benchmark of a record of ``dataset`` /
    ``style`` (``paper_dataset``; ``split`` too where given), or None where the paper prints no
    number of that row there: a RefCOCOg Google-split record is never set beside a UMD number."""
    target = paper_dataset(dataset, style)
    where = {"split": split} if split else {}
    if target is None or paper_numbers(paper, table, row=row, dataset=target, **where).empty:
        return None
    return PaperRef(paper, table, row, target, split)


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
                 by: str = "metric", metric: str | None = None,
                 scale: pd.DataFrame | None = None) -> pd.DataFrame:
    """``ours`` with the papers' numbers beside it, both in percent, and the source of each row.

    ``ours`` has one column level: our metric names (``by="metric"``, e.g. the table of
    ``results_table(..., columns=(), metric=[...])``) or splits (``by="split"``, with
    ``metric`` naming the metric of every cell). ``mapping`` sends a row key of ``ours`` (a
    tuple for a MultiIndex) to a ``PaperRef`` or a tuple ``(paper, table, row[, dataset[,
    split]])``. Columns: ``("ours (%)", c)`` and ``("paper (%)", c)`` for each column ``c``
    of ``ours``, then ``("source", "")``: paper, table, row and where the paper measured it,
    e.g. "DMN Table 1: Only VM (UNC (RefCOCO) testA)". A row with no paper counterpart gets
    NaN and the source "—"; so does a metric or split the paper does not report.
    ``scale`` (``scale_table`` of the rows' runs) adds, after ours, the columns ``("scale",
    "n")``, ``("scale", "steps")`` and ``("scale", "short")``: no number of ours stands beside a
    paper's without the size of its evaluation and training, nor a short run unmarked.
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
    parts = {"ours (%)": ours.astype(float) * 100.0}
    if scale is not None:
        parts["scale"] = scale_cells(scale.reindex(ours.index))
    table = pd.concat({**parts, "paper (%)": paper}, axis=1)
    table[("source", "")] = source
    return table


def with_reference_rows(ours: pd.DataFrame, runs: pd.DataFrame, *, split: str | None = "val",
                        style: str = "refshape") -> pd.DataFrame:
    """``ours`` (rows named by its index's first level, ``row``; a second level ``split`` when
    ``split`` is None) with the ``REFERENCE_ROWS`` of ``runs`` (their ``style``) appended, the
    same metrics in the same units (fractions); unchanged without reference records."""
    keyed = pd.Series(list(zip(runs["model"], runs["variant"], strict=True)), index=runs.index)
    chosen = runs[keyed.isin(list(REFERENCE_ROWS)) & (runs["style"] == style)]
    if split is not None:
        chosen = chosen[chosen["split"] == split]
    metrics = [m for m in ours.columns if m in chosen]
    if chosen.empty or not metrics:
        return ours
    labels = [REFERENCE_ROWS[k] for k in zip(chosen["model"], chosen["variant"], strict=True)]
    index = tuple(ours.index.names)
    floors = results_table(chosen.assign(**{index[0]: labels}), index=index, columns=(),
                           metric=metrics, order={index[0]: list(REFERENCE_ROWS.values())})
    return pd.concat([ours, floors])


def versus_table(runs: pd.DataFrame, rows: Mapping[tuple[str, str], str]
                 ) -> pd.DataFrame | None:
    """Overall IoU (%) per split of the runs ``rows`` names by (model, variant), on the style
    of the ablations (``ablation_runs``: ShapeRef's ``refshape``), with the ``REFERENCE_ROWS``
    below them; None when none of the runs is recorded."""
    keyed = pd.Series(list(zip(runs["model"], runs["variant"], strict=True)), index=runs.index)
    located = ablation_runs(runs)
    if not (keyed.isin(list(rows)) & located).any():
        return None
    rows = {**rows, **REFERENCE_ROWS}
    chosen = runs[keyed.isin(list(rows)) & located]
    labels = [rows[k] for k in zip(chosen["model"], chosen["variant"], strict=True)]
    return results_table(chosen.assign(row=labels), index=("row",), metric="overall_iou",
                         order={"row": list(rows.values())}) * 100
