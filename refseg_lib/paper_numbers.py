"""The papers' published numbers, as data: one ``PaperNumber`` per figure, with its source.

Every value below was copied from the papers (DMN ECCV 2018, CMSA CVPR 2019, MCN CVPR 2020)
and checked a second time against them; M3Att's (TIP 2023, abstract only)
come from its authors' survey, as its section says. The tables are laid out as in the
papers (one ``_grid`` call per table, one tuple per row, in the paper's column order) so that
a reader can check them line by line; ``None`` marks a cell the paper leaves blank.

The metric of every number is named precisely, because "IoU" means two things in this field
(notebook 00, section 4):

- ``"overall IoU"``: total intersection over total union of the split. DMN calls it "mIoU"
  but defines it this way (sec. 4.2); CMSA calls it "IoU" (its official code prints both, and
  its tables carry the cumulative one, like RMI's and RRN's).
- ``"mean IoU"``: the average of the per-sample IoUs. MCN's RES "IoU" is this one: its official
  evaluation averages per-sample IoUs, after ASNLS, at threshold 0.35 (https://github.com/luogen1996/MCN).
- ``"Pr@X"``: percentage of samples whose IoU exceeds X (CMSA: "prec@X", MCN: RES "Acc@X").
- ``"box Acc@0.5"``: REC accuracy, percentage of predicted boxes with IoU > 0.5 (MCN "REC").
- ``"IE"``: MCN's Inconsistency Error (sec. 4.2), in percent.

So a table that sets MCN's RES numbers beside DMN's or CMSA's compares different metrics, and
``refseg_lib.reports.beside_paper`` only ever sets a paper number beside ours of the same
metric.

Usage::

    paper_numbers("DMN", "Table 1", metric="overall IoU")
    paper_numbers("MCN", dataset=UNC, split="val", metric=("box Acc@0.5", "mean IoU"))
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from typing import NamedTuple

import pandas as pd

# Dataset names: one spelling per benchmark, the older papers' name first. The RefCOCOg split
# is part of the name, since the Google and UMD partitions are different test sets.
UNC = "UNC (RefCOCO)"
UNC_PLUS = "UNC+ (RefCOCO+)"
GREF_GOOGLE = "G-Ref (RefCOCOg, Google split)"
GREF_UMD = "G-Ref (RefCOCOg, UMD split)"
REFERIT = "ReferIt (RefCLEF)"
NOT_APPLICABLE = "n/a"  # dataset or split of a number that has none (parameter counts, speed)

# A REFER record's (dataset, split scheme) -> the papers' name of that benchmark (above); the
# pairs not listed (RefCOCO's Google split, RefCLEF's UNC split) are benchmarks none of our
# papers reports on. Hu et al.'s ReferIt split is REFER's berkeley split of RefCLEF.
RECORD_DATASETS: dict[tuple[str, str], str] = {
    ("refcoco", "unc"): UNC,
    ("refcoco+", "unc"): UNC_PLUS,
    ("refcocog", "umd"): GREF_UMD,
    ("refcocog", "google"): GREF_GOOGLE,
    ("refclef", "berkeley"): REFERIT,
}

OVERALL_IOU = "overall IoU"
MEAN_IOU = "mean IoU"
BOX_ACC = "box Acc@0.5"
IE = "IE"
PARAMS = "trainable parameters"
INFERENCE_TIME = "inference time"
TRAIN_TIME_RATIO = "training time, LSTM / SRU"
PR = tuple(f"Pr@{x}" for x in ("0.5", "0.6", "0.7", "0.8", "0.9"))


@dataclass(frozen=True)
class PaperNumber:
    """One published figure: where it is printed, what it measures, and its value."""

    paper: str  # "DMN", "CMSA", "MCN" or "M3Att"
    table: str  # "Table 1", or "Sec. 5.3" for a figure given in the text
    row: str  # the row label as printed (reference numbers are the paper's own)
    dataset: str  # one of the benchmark names above, or NOT_APPLICABLE
    split: str  # "val", "testA", "testB", "test", or NOT_APPLICABLE
    metric: str  # one of the metric names above
    value: float
    unit: str  # "%", "ms", "M" (millions), "x" (a ratio)
    note: str = ""


class _Column(NamedTuple):
    """One column of a paper table: what every number in it measures."""

    dataset: str
    split: str
    metric: str
    unit: str = "%"


def _grid(paper: str, table: str, columns: Sequence[_Column],
          rows: Mapping[str, Sequence[float | None]], note: str = "",
          row_notes: Mapping[str, str] | None = None) -> tuple[PaperNumber, ...]:
    """The numbers of one table, typed in as printed: ``rows[label][i]`` is under ``columns[i]``.

    ``None`` is a blank cell ("-" in the paper) and yields no number.
    """
    numbers = []
    for label, values in rows.items():
        if len(values) != len(columns):
            raise ValueError(f"{paper} {table}, row {label!r}: {len(values)} values for "
                             f"{len(columns)} columns")
        row_note = "; ".join(n for n in (note, (row_notes or {}).get(label, "")) if n)
        for column, value in zip(columns, values, strict=True):
            if value is not None:
                numbers.append(PaperNumber(paper, table, label, column.dataset, column.split,
                                           column.metric, float(value), column.unit, row_note))
    return tuple(numbers)


# ---------------------------------------------------------------------------------------------
# DMN: Margffoy-Tuay, Perez, Botero, Arbelaez, "Dynamic Multimodal Instance Segmentation
# guided by natural language queries", ECCV 2018 (dmn_eccv2018.txt)
# ---------------------------------------------------------------------------------------------

_DMN_IOU_NOTE = ("printed as 'mIoU', defined in sec. 4.2 as total intersection / total union "
                 "over the split, i.e. overall IoU")

DMN_TABLE_1 = _grid(
    "DMN", "Table 1",
    columns=[*(_Column(UNC, "testA", pr) for pr in PR), _Column(UNC, "testA", OVERALL_IOU)],
    rows={
        #                                 Pr@0.5  Pr@0.6  Pr@0.7  Pr@0.8  Pr@0.9  IoU
        "Only VM":                       (15.26, 6.36, 2.96, 0.91, 0.14, 30.92),
        "Only h_t in LM and SM":         (65.38, 57.99, 47.07, 27.38, 4.63, 54.80),
        "No skip connections in UM":     (56.58, 42.77, 26.32, 9.22, 1.07, 49.26),
        "No dynamic filters":            (57.53, 48.70, 38.27, 20.64, 3.00, 50.34),
        "No concatenation of r_t":       (64.52, 56.69, 45.16, 25.56, 4.38, 54.69),
        "DMN":                           (65.83, 57.82, 46.80, 27.64, 5.12, 54.83),
    },
    note="ablations trained to convergence on UNC, evaluated on testA; IoU " + _DMN_IOU_NOTE,
    row_notes={"Only VM": "visual module only, no query: a salient-object prior (sec. 5.1)"},
)

DMN_TABLE_2 = _grid(
    "DMN", "Table 2",
    columns=[_Column(REFERIT, "test", OVERALL_IOU), _Column(GREF_GOOGLE, "val", OVERALL_IOU),
             *(_Column(UNC, s, OVERALL_IOU) for s in ("val", "testA", "testB")),
             *(_Column(UNC_PLUS, s, OVERALL_IOU) for s in ("val", "testA", "testB"))],
    rows={
        #                                 ReferIt GRef  UNC: val testA testB  UNC+: val testA testB
        "[3] Hu et al. 2016 (LSTM-CNN)":   (48.03, 28.14, None, None, None, None, None, None),
        "[33] Hu et al. 2016 (large data)": (49.91, 34.06, None, None, None, None, None, None),
        "[5] Li et al. 2017":              (54.30, None, None, None, None, None, None, None),
        "[4] Liu et al. 2017 (RMI)":       (58.73, 34.52, 45.18, 45.69, 45.57, 29.86, 30.48, 29.50),
        "DMN":                             (52.81, 36.76, 49.78, 54.83, 45.13, 38.88, 44.22, 32.29),
    },
    note="comparison with the state of the art; IoU " + _DMN_IOU_NOTE
    + "; rows other than DMN are quoted by DMN from their papers",
)

DMN_SRU_VS_LSTM = _grid(
    "DMN", "Sec. 5.3",
    columns=[_Column(NOT_APPLICABLE, NOT_APPLICABLE, PARAMS, "M")],
    rows={
        "LM with SRU": (9,),
        "SM with SRU": (10,),
        "LM with LSTM": (24,),
        "SM with LSTM": (24.2,),
    },
    note="SRUs replaced by LSTMs in the language module (LM) and the synthesis module (SM), "
    "trained on UNC, evaluated on testA; Fig. 7b: similar accuracy, a small edge for SRUs",
) + _grid(
    "DMN", "Sec. 5.3",
    columns=[_Column(UNC, "train", TRAIN_TIME_RATIO, "x")],
    rows={"LSTM vs SRU (LM and SM)": (3,)},
    note="approximate: LSTMs 'multiplying training time by a factor of three' (Fig. 7a, low "
    "resolution); the introduction says SRUs are 'up to 3x faster'",
)

# ---------------------------------------------------------------------------------------------
# CMSA: Ye, Rochan, Liu, Wang, "Cross-Modal Self-Attention Network for Referring Image
# Segmentation", CVPR 2019 (cmsa_cvpr2019.txt; its copy lost the table captions)
# ---------------------------------------------------------------------------------------------

_CMSA_IOU_NOTE = ("printed as 'IoU'; overall (cumulative) IoU, as in the RMI / RRN tables it "
                  "extends (the official code prints overall and mean IoU)")
_CMSA_ABLATION_NOTE = ("ablation on UNC; the caption is lost in our copy: val, as the "
                       "full model's 58.32 (Table 1, UNC val) confirms")

CMSA_TABLE_1 = _grid(
    "CMSA", "Table 1",
    columns=[*(_Column(UNC, s, OVERALL_IOU) for s in ("val", "testA", "testB")),
             *(_Column(UNC_PLUS, s, OVERALL_IOU) for s in ("val", "testA", "testB")),
             _Column(GREF_GOOGLE, "val", OVERALL_IOU), _Column(REFERIT, "test", OVERALL_IOU)],
    rows={
        #                UNC val testA  testB  UNC+ val testA  testB  G-Ref  ReferIt
        "LSTM-CNN [10]": (None, None, None, None, None, None, 28.14, 48.03),
        "RMI [17]":      (45.18, 45.69, 45.57, 29.86, 30.48, 29.50, 34.52, 58.73),
        "DMN [20]":      (49.78, 54.83, 45.13, 38.88, 44.22, 32.29, 36.76, 52.81),
        "KWA [22]":      (None, None, None, None, None, None, 36.92, 59.09),
        "RRN [15]":      (55.33, 57.26, 53.93, 39.75, 42.15, 36.11, 36.45, 63.63),
        "Ours":          (58.32, 60.61, 55.09, 43.76, 47.60, 37.89, 39.98, 63.80),
    },
    note=_CMSA_IOU_NOTE + "; CMSA's results refined by DenseCRF (sec. 4.1); G-Ref split not "
    "stated (val only, as the Google-split numbers it quotes)",
    row_notes={"LSTM-CNN [10]": "Hu, Rohrbach, Darrell, ECCV 2016; no UNC / UNC+ numbers"},
)

CMSA_TABLE_2 = _grid(
    "CMSA", "Table 2",
    columns=[_Column(UNC, "val", OVERALL_IOU)],
    rows={
        "No attention": (45.63,),
        "Word attention": (47.01,),
        "Pixel attention": (47.84,),
        "Word-pixel pair attention": (47.57,),
        "Cross-modal self-attention": (50.12,),
    },
    note="attention variants, zeroing parts of eq. 2; " + _CMSA_ABLATION_NOTE + "; "
    + _CMSA_IOU_NOTE,
)

CMSA_TABLE_3 = _grid(
    "CMSA", "Table 3",
    columns=[*(_Column(UNC, "val", pr) for pr in PR), _Column(UNC, "val", OVERALL_IOU)],
    rows={
        #                 prec@0.5 prec@0.6 prec@0.7 prec@0.8 prec@0.9 IoU
        "RMI-LSTM [17]":   (42.99, 33.24, 22.75, 12.11, 2.23, 45.18),
        "RRN-CNN [15]*":   (47.59, 38.76, 26.53, 14.79, 3.17, 46.95),
        "CMSA-S":          (51.19, 41.31, 29.57, 14.99, 2.61, 48.53),
        "CMSA-W":          (51.95, 43.11, 32.74, 19.28, 4.11, 50.12),
        "CMSA+PPM":        (58.25, 49.82, 39.09, 24.76, 5.73, 53.54),
        "CMSA+Deconv":     (58.29, 49.94, 39.16, 25.42, 6.75, 54.18),
        "CMSA+ConvLSTM":   (64.73, 56.03, 45.23, 29.15, 7.86, 56.56),
        "CMSA+Gated":      (65.17, 57.25, 47.37, 33.31, 9.66, 57.08),
        "CMSA+GF(Ours)":   (66.44, 59.70, 50.77, 35.52, 10.96, 58.32),
    },
    note="multimodal features (top 4 rows) and multi-level fusion (bottom 5 rows); "
    + _CMSA_ABLATION_NOTE + "; " + _CMSA_IOU_NOTE,
    row_notes={
        "RRN-CNN [15]*": "the asterisk's footnote is lost in our copy",
        "CMSA-S": "sentence vector from an LSTM instead of words",
        "CMSA+Gated": "self-gated: memory gates on each level's own features, no interaction",
        "CMSA+GF(Ours)": "the full model (gated multi-level fusion)",
    },
)

# ---------------------------------------------------------------------------------------------
# MCN: Luo, Zhou, Sun, Cao, Wu, Deng, Ji, "Multi-task Collaborative Network for Joint Referring
# Expression Comprehension and Segmentation", CVPR 2020 (mcn_cvpr2020.txt)
# ---------------------------------------------------------------------------------------------

_MCN_IOU_NOTE = ("RES 'IoU' is mean IoU (MCN's official evaluation averages per-sample IoUs, "
                 "threshold 0.35)")
_MCN_REFCOCOG_NOTE = ("RefCOCOg: the text says 'the UNC partition [26]' and cites Nagaraja et "
                      "al., i.e. the UMD split")

MCN_TABLE_1 = _grid(
    "MCN", "Table 1",
    columns=[_Column(UNC, "val", MEAN_IOU), *(_Column(UNC, "val", pr) for pr in PR),
             _Column(UNC, "val", IE)],
    rows={
        #                        IoU    Acc@0.5 Acc@0.6 Acc@0.7 Acc@0.8 Acc@0.9 IE
        "w.o. post-processing": (61.61, 73.95, 67.42, 56.39, 32.02, 4.72, 10.37),
        "RoI Crop [10, 30]":    (61.19, 75.13, 68.88, 57.61, 32.42, 3.81, 7.91),
        "Soft-NLS (ours)":      (62.27, 75.92, 69.48, 58.21, 33.20, 5.11, 7.28),
        "ASNLS (ours)":         (62.44, 76.60, 70.33, 58.39, 33.68, 5.26, 6.65),
    },
    note="post-processing of the RES output on RefCOCO val; " + _MCN_IOU_NOTE
    + "; the RES 'Acc@X' columns are Pr@X",
)

_MCN_TABLE_2_COLUMNS = [
    column
    for dataset in (UNC, UNC_PLUS, GREF_UMD)
    for column in (_Column(dataset, "val", BOX_ACC), _Column(dataset, "val", MEAN_IOU),
                   _Column(dataset, "val", IE))
]

MCN_TABLE_2 = _grid(
    "MCN", "Table 2",
    columns=_MCN_TABLE_2_COLUMNS,
    rows={
        #             RefCOCO REC / RES / IE,  RefCOCO+ REC / RES / IE,  RefCOCOg REC / RES / IE
        "MCN (Base)": (77.45, 58.24, 13.80, 62.74, 44.08, 20.70, 62.29, 44.58, 19.87),
        "+TextAtt":   (77.65, 58.44, 13.44, 63.07, 44.38, 19.88, 64.51, 46.58, 18.71),
        "+GARAN":     (79.20, 59.07, 13.37, 66.22, 47.89, 17.12, 65.98, 47.33, 17.44),
        "+CEM":       (80.08, 61.61, 10.37, 67.16, 49.55, 13.51, 66.46, 48.56, 14.90),
        "+ASNLS":     (80.08, 62.44, 6.65, 67.16, 50.62, 7.54, 66.46, 49.22, 9.41),
    },
    note="ablation ladder on the val sets, each row adds one design to the one above; REC is "
    "box Acc@0.5; " + _MCN_IOU_NOTE + "; " + _MCN_REFCOCOG_NOTE,
)

MCN_TABLE_3 = _grid(
    "MCN", "Table 3",
    columns=[_Column(UNC, "val", BOX_ACC), _Column(UNC, "val", MEAN_IOU)],
    rows={
        #                                                    REC    RES
        "Single_REC (scale=13^2)":                          (70.38, None),
        "Single_REC (scale=52^2)":                          (68.58, None),
        "Single_RES (scale=13^2)":                          (None, 36.37),
        "Single_RES (scale=52^2)":                          (None, 57.91),
        "OnlyHeadDifferent (scale=13^2)":                   (72.42, 34.50),
        "OnlyHeadDifferent (scale=52^2)":                   (None, 58.08),
        "OnlyBackboneShared (REC_scale=13^2, RES_scale=52^2)": (75.81, 58.16),
        "MCN (Base)":                                       (77.45, 58.24),
    },
    note="network structures on RefCOCO val, no post-processing; scale = resolution of the "
    "last feature map before prediction; " + _MCN_IOU_NOTE,
    row_notes={"OnlyHeadDifferent (scale=52^2)": "its REC cell is empty in our copy"},
)

_MCN_SPLITS = [(UNC, "val"), (UNC, "testA"), (UNC, "testB"), (UNC_PLUS, "val"),
               (UNC_PLUS, "testA"), (UNC_PLUS, "testB"), (GREF_UMD, "val"), (GREF_UMD, "test")]
_MCN_SPEED_NOTE = "inference time per image, all on the same GTX 1080Ti (Table 4 footnote)"

MCN_TABLE_4 = _grid(
    "MCN", "Table 4",
    columns=[*(_Column(d, s, BOX_ACC) for d, s in _MCN_SPLITS),
             _Column(NOT_APPLICABLE, NOT_APPLICABLE, INFERENCE_TIME, "ms")],
    rows={
        "MCN (ours), vgg16":      (75.98, 76.97, 73.09, 62.80, 65.24, 54.26, 62.42, 62.29, 48),
        "MCN (ours), darknet53":  (80.08, 82.29, 74.98, 67.16, 72.86, 57.31, 66.46, 66.01, 56),
    },
    note="REC against the state of the art (MCN's rows); " + _MCN_SPEED_NOTE + "; "
    + _MCN_REFCOCOG_NOTE,
) + _grid(
    "MCN", "Table 4",
    columns=[_Column(NOT_APPLICABLE, NOT_APPLICABLE, INFERENCE_TIME, "ms")],
    rows={
        "FAOA [38], darknet53": (39,),
        "MattNet [43], frcnn-resnet101": (367,),
        "MattNet [43], mrcnn-resnet101": (378,),
    },
    note="speed of the one-stage and two-stage references; " + _MCN_SPEED_NOTE,
)

MCN_TABLE_5 = _grid(
    "MCN", "Table 5",
    columns=[_Column(d, s, MEAN_IOU) for d, s in _MCN_SPLITS],
    rows={
        "MCN (ours), vgg16":     (57.33, 58.59, 57.23, 46.53, 48.68, 41.93, 46.95, 47.20),
        "MCN (ours), darknet53": (62.44, 64.20, 59.71, 50.62, 54.99, 44.69, 49.22, 49.40),
    },
    note="RES against the state of the art (MCN's rows only: the table also lists DMN's and "
    "CMSA's overall IoU beside MCN's mean IoU); " + _MCN_IOU_NOTE + "; " + _MCN_REFCOCOG_NOTE,
)

# ---------------------------------------------------------------------------------------------
# M3Att: Liu, Ding, Zhang, Jiang, "Multi-Modal Mutual Attention and Iterative Interaction for
# Referring Image Segmentation", IEEE TIP 32, 2023. Only the abstract is held here and the
# paper's tables could not be read (notebook 07's design note); its main row is quoted by two
# of its authors' survey (Ding, Tang, He, Liu, Wu, Jiang, "Multimodal Referring Segmentation: A
# Survey", arXiv 2508.00265v2, Appendix Table 2). No ablation number is available.
# ---------------------------------------------------------------------------------------------

M3ATT_SURVEY = _grid(
    "M3Att", "Survey Table 2",
    columns=[_Column(d, s, OVERALL_IOU) for d, s in _MCN_SPLITS],
    rows={"M3Att [99] [TIP'23]": (73.60, 76.23, 70.36, 65.34, 70.50, 56.98, 64.92, 67.37)},
    note="quoted from arXiv 2508.00265 (not from the paper itself); the survey's caption says "
    "mIoU, but the same table lists LAVT's, DMN's and CMSA's overall IoU under it (and MCN's "
    "mean IoU), so the metric is uncertain; filed as overall IoU, the main metric of the LAVT "
    "family M3Att compares with; RefCOCOg is the UMD partition",
)

PAPER_NUMBERS: tuple[PaperNumber, ...] = (
    DMN_TABLE_1 + DMN_TABLE_2 + DMN_SRU_VS_LSTM
    + CMSA_TABLE_1 + CMSA_TABLE_2 + CMSA_TABLE_3
    + MCN_TABLE_1 + MCN_TABLE_2 + MCN_TABLE_3 + MCN_TABLE_4 + MCN_TABLE_5
    + M3ATT_SURVEY
)

FIELDS = tuple(f.name for f in fields(PaperNumber))


def paper_numbers(paper: str | None = None, table: str | None = None,
                  **filters: str | float | Collection[str]) -> pd.DataFrame:
    """The published numbers as a DataFrame (one row per number, columns ``FIELDS``).

    ``paper``, ``table`` and every keyword filter an equally named field: a string keeps the
    rows equal to it, a list / tuple / set keeps the rows in it. Rows keep the papers' order.
    """
    wanted = {"paper": paper, "table": table, **filters}
    unknown = sorted(set(wanted) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; filter on {', '.join(FIELDS)}")
    frame = pd.DataFrame([astuple(n) for n in PAPER_NUMBERS], columns=list(FIELDS))
    for field_name, value in wanted.items():
        if value is None:
            continue
        if isinstance(value, Collection) and not isinstance(value, str):
            frame = frame[frame[field_name].isin(list(value))]
        else:
            frame = frame[frame[field_name] == value]
    return frame.reset_index(drop=True)
