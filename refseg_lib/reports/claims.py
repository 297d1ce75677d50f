"""The claims ledger, ``reports/CLAIMS.md``: every claim of the five papers we can check, with
the paper's figure, ours, the run records ours comes from and a verdict, generated from the
records (never written by hand).

A claim names two sides, each one of our runs (model, variant, style, split) beside the
paper's row it stands for; it says one side beats the other (``"better"``) or is not worse
than it by more than a tolerance (``"similar"``). The verdict:

- *reproduced*: ours shows the paper's ordering with every seed recorded;
- *not reproduced*: reversed or tied with every seed recorded;
- *inconclusive*: the two seeds disagree;
- *not testable here*: a side has no run record (run its notebook, or ``reproduce``), or the
  claim needs what this course cannot have (the paper's data, a GPU timing), said in ``why``.

A lead under one point (``WEAK_BELOW``) measured with one seed is a close call
(``close_calls``): the main job trains both sides again with a second seed (batch order and
dropout; a run ``<variant>-seed1``, ``plan.SECOND_SEED_SUFFIX``) and the verdict reads both.
This is the rule the notebooks state their verdicts by, so the ledger and the notebooks agree;
the table prints every figure so a reader can judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from refseg_lib.paper_numbers import GREF_GOOGLE, NOT_APPLICABLE, UNC, UNC_PLUS, paper_numbers
from refseg_lib.reports.tables import MISSING, latest_records
from refseg_lib.reports.writing import register_report, scale_notes, write_table

WEAK_BELOW = 1.0  # points: an ordering that holds by less is flagged as weak evidence
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not testable here")
SEED_SUFFIXES = {"seed 0": "", "seed 1": "-seed1"}  # a record's variant, per seed
_NOT_PERCENT = {"params": 1e-6, "abs_dic": 1.0}  # scale of metrics that are not fractions


@dataclass(frozen=True)
class Side:
    """One side of a claim: our run and the paper's row (``paper``, ``table``, ``row`` or a
    tuple of rows whose values add up, ``dataset``, ``split``), or no paper figure (None)."""

    label: str
    model: str
    variant: str
    paper: tuple | None = None
    style: str = "refshape"
    split: str | None = None  # default: the claim's split


@dataclass(frozen=True)
class Claim:
    paper: str  # whose claim: "DMN", "CMSA", "MCN", "M3Att", "RIS", or two names for a
    where: str  # cross-paper one; where it is printed ("Table 1", "Sec. 5.3", "abstract")
    text: str
    metric: str = "overall_iou"  # our metric (a record column)
    paper_metric: str | None = "overall IoU"
    better: Side | None = None
    worse: tuple[Side, ...] = ()
    split: str = "val"
    kind: str = "better"  # "better": better beats each of worse; "similar": not worse
    lower_is_better: bool = False
    margin: float = WEAK_BELOW  # "better": weak below it; "similar": the tolerance
    paper_note: str = ""  # the paper's figure in words where it prints no number
    untestable: str = ""  # why the claim cannot be tested here (then no sides)


def _dmn1(row: str) -> tuple:
    return ("DMN", "Table 1", row, UNC, "testA")


def _mcn(table: str, row: str) -> tuple:
    return ("MCN", table, row, UNC, "val")


def _cmsa(table: str, row: str, dataset: str = UNC, split: str = "val") -> tuple:
    return ("CMSA", table, row, dataset, split)


_DMN = Side("DMN", "dmn", "base", _dmn1("DMN"))
_M3 = {v: Side(label, "m3att", v) for v, label in (
    ("vanilla", "vanilla decoder"), ("m3dec", "M3Dec"), ("imi", "M3Dec + IMI"),
    ("lfr", "M3Dec + IMI + LFR"))}
_NO_NUMBER = "claimed in the abstract; no number (only the abstract could be read)"
_RIS_NO_NUMBER = "no number: the paper's tables could not be read here (notebook 08)"

CLAIMS: tuple[Claim, ...] = (
    # --- DMN (notebook 02) -------------------------------------------------------------------
    Claim("DMN", "Table 1", "dynamic filters help: DMN beats DMN without them", split="testA",
          better=_DMN, worse=(Side("no dynamic filters", "dmn", "no_filters",
                                   _dmn1("No dynamic filters")),)),
    Claim("DMN", "Table 1", "the upsampling module's skip connections help", split="testA",
          better=_DMN, worse=(Side("no skip connections", "dmn", "no_skip",
                                   _dmn1("No skip connections in UM")),)),
    Claim("DMN", "Table 1", "concatenating r_t (the word's SRU state) to the responses helps",
          split="testA", better=_DMN, worse=(Side("no concatenation", "dmn", "no_concat",
                                                  _dmn1("No concatenation of r_t")),)),
    Claim("DMN", "Table 1", "every word's state, not only h_t, in the language and synthesis "
          "modules helps", split="testA",
          better=_DMN, worse=(Side("only h_t", "dmn", "only_h",
                                   _dmn1("Only h_t in LM and SM")),)),
    Claim("DMN", "Table 1", "the expression matters: DMN far above the visual model alone",
          split="testA", better=_DMN,
          worse=(Side("Only VM", "only_vm", "base", _dmn1("Only VM")),)),
    Claim("DMN", "Fig. 7", "SRUs reach the LSTMs' accuracy in the language and synthesis "
          "modules (ours: the low-resolution stage, within notebook 02's 3 points)",
          kind="similar", margin=3.0, paper_note="Fig. 7: curves of the same level, no number",
          better=Side("SRU", "dmn", "base-lowres"), worse=(Side("LSTM", "dmn", "lstm-lowres"),)),
    Claim("DMN", "Sec. 5.3", "SRUs need fewer parameters than LSTMs (language + synthesis "
          "modules; ours: the whole model)", metric="params",
          paper_metric="trainable parameters", lower_is_better=True, margin=0.0,
          better=Side("SRU", "dmn", "base", ("DMN", "Sec. 5.3", ("LM with SRU", "SM with SRU"),
                                             NOT_APPLICABLE, NOT_APPLICABLE)),
          worse=(Side("LSTM", "dmn", "lstm", ("DMN", "Sec. 5.3", ("LM with LSTM",
                                                                   "SM with LSTM"),
                                               NOT_APPLICABLE, NOT_APPLICABLE)),)),
    Claim("DMN", "Sec. 5.3", "training with LSTMs takes 3x as long as with SRUs",
          paper_note="3x (training time, LSTM / SRU)",
          untestable="a timing: the run records come from runs that shared two CPU cores; "
                     "benchmarks/sru_vs_lstm.py measures the speed in one process"),
    # --- CMSA (notebooks 03-05) --------------------------------------------------------------
    Claim("CMSA", "Table 2", "cross-modal self-attention beats no, word, pixel and word-pixel "
          "pair attention", better=Side("cross-modal self-attention", "cmsa", "cmsa_w",
                                        _cmsa("Table 2", "Cross-modal self-attention")),
          worse=tuple(Side(row, "cmsa", v, _cmsa("Table 2", row)) for v, row in (
              ("att_none", "No attention"), ("att_word", "Word attention"),
              ("att_pixel", "Pixel attention"), ("att_pair", "Word-pixel pair attention")))),
    Claim("CMSA", "Table 3", "word-level features (CMSA-W) beat one sentence vector (CMSA-S)",
          better=Side("CMSA-W", "cmsa", "cmsa_w", _cmsa("Table 3", "CMSA-W")),
          worse=(Side("CMSA-S", "cmsa", "cmsa_s", _cmsa("Table 3", "CMSA-S")),)),
    Claim("CMSA", "Table 3", "gated multi-level fusion beats PPM, deconvolution, ConvLSTM and "
          "self-gated fusion", better=Side("CMSA+GF", "cmsa", "base",
                                           _cmsa("Table 3", "CMSA+GF(Ours)")),
          worse=tuple(Side(row, "cmsa", v, _cmsa("Table 3", row)) for v, row in (
              ("ppm", "CMSA+PPM"), ("deconv", "CMSA+Deconv"), ("convlstm", "CMSA+ConvLSTM"),
              ("self_gated", "CMSA+Gated")))),
    Claim("CMSA", "Table 3", "fusing three levels beats the single-level CMSA-W",
          better=Side("CMSA+GF", "cmsa", "base", _cmsa("Table 3", "CMSA+GF(Ours)")),
          worse=(Side("CMSA-W", "cmsa", "cmsa_w", _cmsa("Table 3", "CMSA-W")),)),
    Claim("CMSA", "Table 1", "RefCOCO+ (no location words) is harder than RefCOCO",
          better=Side("refshape", "cmsa", "base", _cmsa("Table 1", "Ours")),
          worse=(Side("refshape+", "cmsa", "base", _cmsa("Table 1", "Ours", UNC_PLUS),
                      style="refshape+"),)),
    # --- MCN (notebook 06b): mean IoU and IE at MCN's threshold 0.35 --------------------------
    Claim("MCN", "Table 1", "ASNLS is the best post-processing of the mask",
          metric="mean_iou@0.35", paper_metric="mean IoU",
          better=Side("ASNLS", "mcn", "cem+asnls", _mcn("Table 1", "ASNLS (ours)")),
          worse=(Side("Soft-NLS", "mcn", "cem+soft_nls", _mcn("Table 1", "Soft-NLS (ours)")),
                 Side("RoI crop", "mcn", "cem+roi", _mcn("Table 1", "RoI Crop [10, 30]")),
                 Side("none", "mcn", "cem", _mcn("Table 1", "w.o. post-processing")))),
    Claim("MCN", "Table 1", "soft suppression (Soft-NLS) beats cropping the mask to the box",
          metric="mean_iou@0.35", paper_metric="mean IoU",
          better=Side("Soft-NLS", "mcn", "cem+soft_nls", _mcn("Table 1", "Soft-NLS (ours)")),
          worse=(Side("RoI crop", "mcn", "cem+roi", _mcn("Table 1", "RoI Crop [10, 30]")),)),
    Claim("MCN", "Table 1", "ASNLS lowers the Inconsistency Error", metric="IE@0.35",
          paper_metric="IE", lower_is_better=True,
          better=Side("ASNLS", "mcn", "cem+asnls", _mcn("Table 1", "ASNLS (ours)")),
          worse=(Side("none", "mcn", "cem", _mcn("Table 1", "w.o. post-processing")),)),
    Claim("MCN", "Table 2", "GARAN beats plain text attention", metric="mean_iou@0.35",
          paper_metric="mean IoU", better=Side("+GARAN", "mcn", "garan",
                                               _mcn("Table 2", "+GARAN")),
          worse=(Side("+TextAtt", "mcn", "text_att", _mcn("Table 2", "+TextAtt")),)),
    Claim("MCN", "Table 2", "CEM raises the mask's IoU", metric="mean_iou@0.35",
          paper_metric="mean IoU", better=Side("+CEM", "mcn", "cem", _mcn("Table 2", "+CEM")),
          worse=(Side("+GARAN", "mcn", "garan", _mcn("Table 2", "+GARAN")),)),
    Claim("MCN", "Table 2", "CEM raises the box's accuracy", metric="Acc@0.5",
          paper_metric="box Acc@0.5",
          better=Side("+CEM", "mcn", "cem", _mcn("Table 2", "+CEM")),
          worse=(Side("+GARAN", "mcn", "garan", _mcn("Table 2", "+GARAN")),)),
    Claim("MCN", "Table 2", "CEM lowers the Inconsistency Error", metric="IE@0.35",
          paper_metric="IE", lower_is_better=True,
          better=Side("+CEM", "mcn", "cem", _mcn("Table 2", "+CEM")),
          worse=(Side("+GARAN", "mcn", "garan", _mcn("Table 2", "+GARAN")),)),
    Claim("MCN", "Table 3", "learning segmentation too improves the box (multi-task vs "
          "single REC)", metric="Acc@0.5", paper_metric="box Acc@0.5",
          better=Side("MCN (Base)", "mcn", "base", _mcn("Table 3", "MCN (Base)")),
          worse=(Side("Single_REC 13^2", "mcn", "single_rec_13",
                      _mcn("Table 3", "Single_REC (scale=13^2)")),)),
    Claim("MCN", "Table 3", "learning comprehension too improves the mask (multi-task vs "
          "single RES)", metric="mean_iou@0.35", paper_metric="mean IoU",
          better=Side("MCN (Base)", "mcn", "base", _mcn("Table 3", "MCN (Base)")),
          worse=(Side("Single_RES 52^2", "mcn", "single_res_52",
                      _mcn("Table 3", "Single_RES (scale=52^2)")),)),
    Claim("MCN", "Table 3", "the bottom-up connection beats sharing the backbone only",
          metric="Acc@0.5", paper_metric="box Acc@0.5",
          better=Side("MCN (Base)", "mcn", "base", _mcn("Table 3", "MCN (Base)")),
          worse=(Side("OnlyBackboneShared", "mcn", "obs", _mcn(
              "Table 3", "OnlyBackboneShared (REC_scale=13^2, RES_scale=52^2)")),)),
    Claim("MCN", "Table 4", "MCN answers in 56 ms per image, 6.5x faster than MattNet",
          paper_note="56 ms vs 367 ms (GTX 1080Ti)",
          untestable="a GPU latency against MattNet, which the course does not build; "
                     "benchmarks/mcn_latency.py times MCN against its single-task models"),
    # --- M3Att (notebook 07): the abstract's claims, no number -------------------------------
    Claim("M3Att", "abstract", "mutual attention (M3Dec) beats a vanilla cross-attention "
          "decoder", paper_note=_NO_NUMBER, better=_M3["m3dec"], worse=(_M3["vanilla"],)),
    Claim("M3Att", "abstract", "iterative multi-modal interaction (IMI) improves M3Dec",
          paper_note=_NO_NUMBER, better=_M3["imi"], worse=(_M3["m3dec"],)),
    Claim("M3Att", "abstract", "language feature reconstruction (LFR) improves the masks",
          paper_note=_NO_NUMBER, better=_M3["lfr"], worse=(_M3["imi"],)),
    Claim("M3Att", "abstract", "LFR keeps the language information in the features (our "
          "probe: words recovered from the decoder's features)", metric="word_recovery",
          paper_metric=None, paper_note=_NO_NUMBER, better=_M3["lfr"], worse=(_M3["imi"],)),
    Claim("M3Att", "survey Table 2", "M3Att reaches 73.60 overall IoU on RefCOCO val",
          paper_note="73.60 (Swin-B + BERT, 480 px)",
          untestable="RefCOCO and a pretrained Swin-B and BERT on a GPU; the quick profile "
                     "trains small models on ShapeRef"),
    # --- RIS (notebook 08): instance metrics --------------------------------------------------
    Claim("RIS", "sec. 4", "the curriculum (two steps first, then all) helps training: better "
          "instance masks", metric="sbd", paper_metric=None, paper_note=_RIS_NO_NUMBER,
          better=Side("curriculum", "ris", "all-curriculum"),
          worse=(Side("n + 2 from the start", "ris", "all"),)),
    Claim("RIS", "sec. 4", "the curriculum helps training: better counting", metric="count_acc",
          paper_metric=None, paper_note=_RIS_NO_NUMBER,
          better=Side("curriculum", "ris", "all-curriculum"),
          worse=(Side("n + 2 from the start", "ris", "all"),)),
    Claim("RIS", "sec. 3", "the learned confidence stops the sequence at the number of objects",
          metric="count_acc", paper_metric=None, paper_note=_RIS_NO_NUMBER,
          better=Side("stopping learned", "ris", "all-curriculum"),
          worse=(Side("two steps only (stage 1)", "ris", "all-stage1"),)),
    Claim("RIS", "Table 1", "RIS counts leaves on CVPPP (|DiC| 1.1 with CRF, via Ren & Zemel)",
          paper_note="not verified: the paper's tables could not be read",
          untestable="CVPPP leaf images and the paper's own table"),
    # --- across papers (notebook 09's leaderboard: the same harness and budget) ------------
    Claim("CMSA", "Table 1", "CMSA beats DMN on RefCOCO (ours: the leaderboard)",
          better=Side("CMSA+GF", "cmsa", "base", _cmsa("Table 1", "Ours")),
          worse=(Side("DMN", "dmn", "base", _cmsa("Table 1", "DMN [20]")),)),
    Claim("DMN", "Table 2", "DMN beats LSTM-CNN on G-Ref (ours: the leaderboard, refshape-g)",
          better=Side("DMN", "dmn", "base", ("DMN", "Table 2", "DMN", GREF_GOOGLE, "val"),
                      style="refshape-g"),
          worse=(Side("LSTM-CNN", "lstm_cnn", "base",
                      ("DMN", "Table 2", "[3] Hu et al. 2016 (LSTM-CNN)", GREF_GOOGLE, "val"),
                      style="refshape-g"),)),
    Claim("DMN", "Table 2", "testA (people) is easier than testB (objects) (ours: the "
          "leaderboard's DMN)",
          better=Side("testA", "dmn", "base", ("DMN", "Table 2", "DMN", UNC, "testA"),
                      split="testA"),
          worse=(Side("testB", "dmn", "base", ("DMN", "Table 2", "DMN", UNC, "testB"),
                      split="testB"),)),
    Claim("DMN", "Table 2", "RefCOCO+ is harder than RefCOCO (ours: the leaderboard's DMN)",
          better=Side("refshape", "dmn", "base", ("DMN", "Table 2", "DMN", UNC, "val")),
          worse=(Side("refshape+", "dmn", "base", ("DMN", "Table 2", "DMN", UNC_PLUS,
                                                          "val"), style="refshape+"),)),
    Claim("M3Att / CMSA", "survey Table 2, CMSA Table 1", "M3Att beats CMSA on RefCOCO (ours: "
          "the leaderboard)", better=Side("M3Att", "m3att", "lfr", (
              "M3Att", "Survey Table 2", "M3Att [99] [TIP'23]", UNC, "val")),
          worse=(Side("CMSA+GF", "cmsa", "base", _cmsa("Table 1", "Ours")),)),
)


# ---------------------------------------------------------------------------------------------
# Judging a claim from the records
# ---------------------------------------------------------------------------------------------


def _scale(metric: str) -> float:
    return _NOT_PERCENT.get(metric, 100.0)


def _paper_value(side: Side, metric: str | None) -> float | None:
    if side.paper is None or metric is None:
        return None
    paper, table, rows, dataset, split = side.paper
    rows = rows if isinstance(rows, tuple) else (rows,)
    found = paper_numbers(paper, table, metric=metric, dataset=dataset, split=split)
    found = found[found["row"].isin(rows)]
    if len(found) != len(rows):
        raise LookupError(f"{paper} {table}: expected one {metric!r} number for each of "
                          f"{rows} on {dataset} {split}, found {len(found)}")
    return float(found["value"].sum())


def _fmt(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def seeded(variant: str, suffix: str) -> str:
    """The record variant of ``variant`` trained with another seed: the suffix goes before an
    evaluation setting (MCN's ``cem+asnls`` -> ``cem-seed1+asnls``)."""
    run, plus, setting = variant.partition("+")
    return f"{run}{suffix}{plus}{setting}"


def _our_runs(runs: pd.DataFrame, side: Side, split: str, metric: str) -> dict[str, pd.Series]:
    """Our record of ``side`` with each seed recorded ("seed 0", "seed 1")."""
    found = {}
    for order, suffix in SEED_SUFFIXES.items():
        variant = seeded(side.variant, suffix)
        match = runs[(runs["model"] == side.model) & (runs["variant"] == variant)
                     & (runs["style"] == side.style) & (runs["split"] == split)]
        if len(match) and metric in match and pd.notna(match[metric].iloc[0]):
            found[order] = match.iloc[0]
    return found


def judge(claim: Claim, runs: pd.DataFrame) -> dict[str, str]:
    """One row of the ledger: the claim, the paper's figure, ours, the verdict and why, and
    the record files ours comes from."""
    row = {"paper": claim.paper, "where": claim.where, "claim": claim.text,
           "metric": claim.paper_metric or claim.metric}
    sides = [claim.better, *claim.worse] if claim.better else []
    quoted = [_paper_value(s, claim.paper_metric) for s in sides]
    figures = " vs ".join(_fmt(v) for v in quoted) if any(v is not None for v in quoted) else ""
    row["paper's figure"] = "; ".join(p for p in (figures, claim.paper_note) if p) or MISSING
    if claim.untestable:
        return {**row, "ours": MISSING, "verdict": VERDICTS[3], "why": claim.untestable,
                "records": MISSING}
    found = [_our_runs(runs, s, s.split or claim.split, claim.metric) for s in sides]
    missing = [f"{s.label} ({s.model}/{s.variant}, {s.style} {s.split or claim.split})"
               for s, f in zip(sides, found, strict=True) if "seed 0" not in f]
    if missing:
        return {**row, "ours": MISSING, "verdict": VERDICTS[3],
                "why": f"no run record of {', '.join(missing)}: run its notebook with "
                       "full=True, or `python -m refseg_lib reproduce`", "records": MISSING}
    seeds = [o for o in found[0] if all(o in f for f in found)]
    ours, holds, whys = [], [], []
    for order in seeds:
        values = [float(f[order][claim.metric]) * _scale(claim.metric) for f in found]
        ours.append(" vs ".join(_fmt(v) for v in values)
                    + (f" ({order})" if len(seeds) > 1 else ""))
        gaps = _gaps(claim, found, order)
        ok, why = _holds(claim, min(gaps), len(gaps))
        holds.append(ok)
        whys.append(why + (f" ({order})" if len(seeds) > 1 else ""))
    verdict = (VERDICTS[0] if all(holds) else VERDICTS[1] if not any(holds) else VERDICTS[2])
    if len(seeds) == 1 and claim.kind == "better" and _is_close(claim, found):
        whys[0] += f": under {claim.margin:g} point with one seed, a second seed is due"
    if verdict != VERDICTS[0]:
        whys.append(_cause(claim, sides, found, runs))
    names = sorted({Path(str(f[o].get("path", ""))).name for f in found for o in seeds})
    return {**row, "ours": "; ".join(ours), "verdict": verdict, "why": "; ".join(whys),
            "records": ", ".join(names)}


RISING = 2.0  # points of the claim's metric over the last fifth of training: still learning


def _cause(claim: Claim, sides: list[Side], found: list[dict[str, pd.Series]],
           runs: pd.DataFrame) -> str:
    """The measured cause of a verdict other than "reproduced", from the records: every side
    below the untrained category reader (nothing read past the category), a side still
    learning when its budget ended (its curve of the claim's metric where recorded, else of
    val overall IoU), or none of these."""
    floor = runs[(runs["model"] == "reference") & (runs["variant"] == "category_reader")
                 & (runs["split"] == claim.split) & (runs["style"] == sides[0].style)]
    has_floor = (len(floor) > 0 and claim.metric in floor.columns
                 and pd.notna(floor[claim.metric].iloc[0]))
    if has_floor and all(float(f["seed 0"][claim.metric]) < float(floor[claim.metric].iloc[0])
                         for f in found):
        return (f"cause: every side is below the untrained category reader "
                f"({100 * float(floor[claim.metric].iloc[0]):.2f}), so no run had learnt to "
                "read past the category within its budget")
    rising, metric = [], "val overall IoU"
    for side, f in zip(sides, found, strict=True):
        gain, metric = _late_gain(f["seed 0"].get("curve"), claim.metric)
        if gain is not None and gain >= RISING:
            rising.append(f"{side.label} +{gain:.1f}")
    if rising:
        return (f"cause: still learning when its budget ended ({metric} over the last fifth of "
                f"training: {', '.join(rising)} points)")
    above = "some side above the category reader, " if has_floor else ""
    return (f"cause: none of the measured ones ({above}no curve still rising): the ordering "
            "itself differs on ShapeRef at this scale")


def _late_gain(curve: object, metric: str = "overall_iou") -> tuple[float | None, str]:
    """Points of ``metric`` (val overall IoU where the curve does not record it) gained over
    the last fifth of a learning curve, and the metric's name."""
    if not isinstance(curve, list) or len(curve) < 5:
        return None, "val overall IoU"
    last = curve[-1]
    key = metric if metric in last else "overall_iou"
    earlier = [p for p in curve if p["step"] <= 0.8 * last["step"]]
    name = "val overall IoU" if key == "overall_iou" else f"val {key}"
    if not earlier or key not in last or key not in earlier[-1]:
        return None, name
    return 100 * (last[key] - earlier[-1][key]), name


def _holds(claim: Claim, worst: float, comparisons: int) -> tuple[bool, str]:
    """Whether one seed's smallest lead ``worst`` shows the claim, and why in words."""
    if claim.kind == "similar":
        ok = worst > -claim.margin
        return ok, (("ahead" if worst > 0 else "behind") + f" by {abs(worst):.2f}: "
                    + ("within" if ok else "beyond") + f" the {claim.margin:g}-point tolerance")
    every = " in every comparison" if comparisons > 1 else ""
    return worst > 0, (f"ahead by at least {worst:.2f}{every}" if worst > 0
                       else f"reversed by {-worst:.2f}" if worst < 0 else "tied")


def _gaps(claim: Claim, found: list[dict[str, pd.Series]], order: str) -> list[float]:
    sign = -1.0 if claim.lower_is_better else 1.0
    values = [float(f[order][claim.metric]) * _scale(claim.metric) for f in found]
    return [sign * (values[0] - v) for v in values[1:]]


def _is_close(claim: Claim, found: list[dict[str, pd.Series]]) -> bool:
    """A "better" claim whose smallest lead (or reversal) with the first seed is under its
    margin: too close for one seed to settle."""
    return claim.kind == "better" and claim.margin > 0 and abs(
        min(_gaps(claim, found, "seed 0"))) < claim.margin


def close_calls(records: pd.DataFrame, claims: tuple[Claim, ...] = CLAIMS
                ) -> set[tuple[str, str, str]]:
    """(model, variant, style) of both sides of every close claim still measured with one seed:
    the runs the main job trains again with a second seed (``plan.second_seed_jobs``)."""
    runs = _quick_shapes(records)
    wanted = set()
    for claim in claims:
        if claim.untestable or claim.better is None:
            continue
        sides = [claim.better, *claim.worse]
        found = [_our_runs(runs, s, s.split or claim.split, claim.metric) for s in sides]
        if all("seed 0" in f and "seed 1" not in f for f in found) and _is_close(claim, found):
            wanted |= {(s.model, s.variant, s.style) for s in sides}
    return wanted


def _quick_shapes(records: pd.DataFrame) -> pd.DataFrame:
    runs = latest_records(records)
    return runs[(runs["dataset"] == "shapes") & (runs["profile"] == "quick")]


def claims_ledger(records: pd.DataFrame, claims: tuple[Claim, ...] = CLAIMS) -> pd.DataFrame:
    """The ledger: one row per claim (ShapeRef quick-profile records), in the order above."""
    runs = _quick_shapes(records)
    ledger = pd.DataFrame([judge(c, runs) for c in claims])
    ledger.index = pd.RangeIndex(1, len(ledger) + 1, name="#")
    return ledger


@register_report("claims")
def claims_report(records: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``CLAIMS.md`` / ``CLAIMS.csv``: the ledger, its counts and how to read it."""
    ledger = claims_ledger(records)
    if (ledger["ours"] == MISSING).all():  # no record of any claim's runs: nothing to judge
        return []
    counts = ledger["verdict"].value_counts()
    tally = ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)
    papers = ", ".join(f"{p} {n}" for p, n in ledger["paper"].value_counts(sort=False).items())
    notes = [
        f"{len(ledger)} claims ({papers}): {tally}.",
        "Generated by `refseg_lib.reports.claims` from the run records in `runs/` (ShapeRef, quick "
        "profile); regenerate with `python -m refseg_lib report`, never edit by hand.",
        "Paper's figure: the paper's number for each side of the claim, in the order of the "
        "claim (its benchmark: UNC/RefCOCO unless the claim says otherwise). Ours: the same "
        "sides from our records on ShapeRef's analogue of that benchmark and split, in "
        "percent (parameters in millions); '(seed 1)' is the same run trained again with "
        "another seed for the batch order and dropout.",
        "Verdict: reproduced when ours shows the paper's ordering with every seed recorded; "
        "for 'similar' claims, when ours is within the stated tolerance; not reproduced when "
        "reversed or tied with every seed; inconclusive when the seeds disagree (a lead under "
        f"{WEAK_BELOW:g} point with the first seed is always measured again with a second); "
        "not testable here when a record is missing or the claim needs the paper's data or "
        "hardware. Our runs are small (ShapeRef at the quick profile's size and budget): a "
        "verdict is about ShapeRef at that scale, not about the paper. Every verdict other "
        "than reproduced names its measured cause: every side below the untrained category "
        f"reader, a side still learning (more than {RISING:g} points of the claim's metric over "
        "the last fifth of its training), or none of these.",
        *scale_notes(_quick_shapes(records)),
    ]
    return list(write_table(ledger.reset_index(), "CLAIMS", "Claims ledger", notes, out_dir))
