"""Metrics of referring image segmentation (RES) and comprehension (REC), one function each.

Conventions, chosen once for every model of the course (each is compared below with the
papers' official evaluation code):

- Binarisation is strict: a pixel is foreground when ``probability > t``, computed as
  ``logit > log(t / (1 - t))`` from logits. MCN's and LAVT's evaluations use ``>``, CMSA's
  code uses ``>=``; only pixels exactly at ``t`` differ.
- Two empty masks (empty union) have IoU 0.0. This is what ``pycocotools.mask.iou`` returns
  and what LAVT-era evaluations do (``this_iou = 0.0 if U == 0``); MCN's smoothed ratio
  ``(I + 1e-10) / (U + 1e-10)`` would give 1.0 and CMSA's ``I / U`` gives NaN. RefCOCO and
  ShapeRef always have a non-empty referent, so only a degenerate test input can hit this, and
  it never changes the overall IoU (it adds 0 to both sums).
- Pr@X and Acc@X count ``IoU >= X``: CMSA's and LAVT's ``seg_correct += (I / U >= X)``, and
  the usual REC evaluation (MAttNet, TransVG) for boxes. MCN's code counts ``IoU > X``; pass
  ``strict=True`` to reproduce it. The two differ only for an IoU exactly at X.
- The Inconsistency Error keeps MCN's strict ``> 0.5`` on both sides (its definition, sec. 4.2).
- Boxes are ``(x0, y0, x1, y1)`` with continuous areas ``(x1 - x0) (y1 - y0)``, no ``+ 1``
  (``refseg_lib.data.types``: a pixel covers ``[c, c + 1)``), as ``pycocotools`` computes.

Per-sample results are float64 / int64 tensors on the CPU whatever device the inputs are on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pandas as pd
import torch

from refseg_lib.data.types import PHENOMENA

PRIMARY_THRESHOLD = 0.5
PR_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
# Binarisation thresholds tried by `choose_threshold`: 0.05, 0.10, ..., 0.95.
THRESHOLD_CANDIDATES = tuple(round(0.05 * k, 2) for k in range(1, 20))


# ---------------------------------------------------------------------------------------------
# Shape checks
# ---------------------------------------------------------------------------------------------


def _check_masks(pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.ndim != 3 or pred.shape != gt.shape:
        raise ValueError(
            "pred and gt must both be (B, H, W) with the same shape, got "
            f"{tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    if pred.dtype != torch.bool or gt.dtype != torch.bool:
        raise ValueError(
            f"masks must be bool, got {pred.dtype} and {gt.dtype}; binarise scores first "
            "(e.g. probabilities > 0.5)"
        )


def _check_vector(name: str, x: torch.Tensor, n: int | None = None) -> None:
    if x.ndim != 1 or (n is not None and x.shape[0] != n):
        want = "(N,)" if n is None else f"({n},)"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")


def _check_threshold(t: float) -> None:
    if not 0.0 < t < 1.0:
        raise ValueError(f"a binarisation threshold must lie in (0, 1), got {t}")


def _fmt(x: float) -> str:
    return f"{x:g}"


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------


def mask_intersection_union(
    pred: torch.Tensor, gt: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample pixel counts ``I_i = |P_i ∩ G_i|``, ``U_i = |P_i ∪ G_i|`` (all RES papers).

    pred, gt: ``(B, H, W)`` bool, on any device. Returns ``(inter (B,), union (B,))`` int64 on CPU.
    """
    _check_masks(pred, gt)
    gt = gt.to(pred.device)
    inter = (pred & gt).sum(dim=(1, 2))  # (B,)
    union = (pred | gt).sum(dim=(1, 2))  # (B,)
    return inter.cpu(), union.cpu()


def iou_from_counts(inter: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
    """``IoU_i = I_i / U_i``, and 0 where ``U_i = 0`` (two empty masks; pycocotools' value).

    inter, union: ``(N,)`` counts (or areas). Returns ``(N,)`` float64 on CPU.
    """
    _check_vector("inter", inter)
    _check_vector("union", union, inter.shape[0])
    inter, union = inter.detach().cpu().double(), union.detach().cpu().double()
    nonempty = union > 0
    return torch.where(nonempty, inter / torch.where(nonempty, union, 1.0), 0.0)


def mask_iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-sample mask IoU ``|P_i ∩ G_i| / |P_i ∪ G_i|``: two ``(B, H, W)`` bool -> ``(B,)``."""
    return iou_from_counts(*mask_intersection_union(pred, gt))


def overall_iou(inter: torch.Tensor, union: torch.Tensor) -> float:
    """Overall (cumulative) IoU ``sum_i I_i / sum_i U_i`` over a split.

    What DMN, CMSA and RRN tables report as "IoU" / "overall IoU" (DMN's text calls it "mIoU"
    but defines it as this ratio of sums). Large objects weigh more. 0.0 when every union is 0.
    """
    _check_vector("inter", inter)
    _check_vector("union", union, inter.shape[0])
    total_union = float(union.sum())
    return float(inter.sum()) / total_union if total_union > 0 else 0.0


def mean_iou(ious: torch.Tensor) -> float:
    """Mean IoU ``(1 / N) sum_i IoU_i``: MCN's official evaluation and LAVT-era papers' mIoU.

    Every expression weighs the same, so small objects count as much as large ones.
    """
    _check_vector("ious", ious)
    if ious.numel() == 0:
        raise ValueError("mean_iou of no samples is undefined; pass at least one IoU")
    return float(ious.double().mean())


def precision_at(
    ious: torch.Tensor, thresholds: Sequence[float] = PR_THRESHOLDS, *, strict: bool = False
) -> dict[str, float]:
    """``Pr@X = (1 / N) sum_i [IoU_i >= X]`` (DMN, CMSA, RRN, MCN "Acc@X" of masks, LAVT-era).

    ``strict=True`` counts ``IoU_i > X`` as MCN's code does. The comparison runs in the dtype
    of ``ious``, so an IoU stored as exactly X counts as reaching X. Keys: ``"Pr@0.5"``, ...
    """
    _check_vector("ious", ious)
    if ious.numel() == 0:
        raise ValueError("precision_at of no samples is undefined; pass at least one IoU")
    out = {}
    for x in thresholds:
        hit = ious > x if strict else ious >= x  # (N,) bool
        out[f"Pr@{_fmt(x)}"] = float(hit.double().mean())
    return out


# ---------------------------------------------------------------------------------------------
# Boxes (REC) and the Inconsistency Error
# ---------------------------------------------------------------------------------------------


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pair box IoU ``|a ∩ b| / (|a| + |b| - |a ∩ b|)`` of xyxy boxes, continuous areas.

    a, b: ``(B, 4)`` as ``(x0, y0, x1, y1)``. Returns ``(B,)`` float64 on CPU; 0 for two
    zero-area boxes (pycocotools' value). Used for REC Acc@0.5 (MCN and REC papers).
    """
    if a.ndim != 2 or a.shape[-1] != 4 or a.shape != b.shape:
        raise ValueError(
            f"boxes must both be (B, 4) xyxy, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return iou_from_counts(*box_intersection_union(a.detach().cpu().double(),
                                                   b.detach().cpu().double()))


def box_intersection_union(a: torch.Tensor, b: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair intersection and union areas (B,) of xyxy boxes (B, 4), on their device and in
    their dtype (``box_iou`` for metrics; MCN's REC loss uses it on the training device)."""
    wh_a = (a[:, 2:] - a[:, :2]).clamp(min=0)  # (B, 2)
    wh_b = (b[:, 2:] - b[:, :2]).clamp(min=0)  # (B, 2)
    top_left = torch.maximum(a[:, :2], b[:, :2])  # (B, 2)
    bottom_right = torch.minimum(a[:, 2:], b[:, 2:])  # (B, 2)
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=1)  # (B,)
    return inter, wh_a.prod(dim=1) + wh_b.prod(dim=1) - inter


def accuracy_at(box_ious: torch.Tensor, threshold: float = 0.5, *, strict: bool = False) -> float:
    """REC accuracy ``Acc@X = (1 / N) sum_i [IoU(b_i, g_i) >= X]`` (MCN Table 2 "REC", X = 0.5).

    ``strict=True`` counts ``> X`` as MCN's ``cal_detect_iou`` does.
    """
    key = f"Pr@{_fmt(threshold)}"
    return precision_at(box_ious, (threshold,), strict=strict)[key]


def inconsistency_error(
    box_ious: torch.Tensor, mask_ious: torch.Tensor, threshold: float = 0.5
) -> float:
    """MCN's Inconsistency Error (sec. 4.2), the fraction of samples where REC and RES disagree:

    ``IE = (#[box IoU > t and mask IoU <= t] + #[mask IoU > t and box IoU <= t]) / N``.
    """
    _check_vector("box_ious", box_ious)
    _check_vector("mask_ious", mask_ious, box_ious.shape[0])
    if box_ious.numel() == 0:
        raise ValueError("inconsistency_error of no samples is undefined")
    box_right, mask_right = box_ious > threshold, mask_ious > threshold  # (N,) bool each
    return float((box_right ^ mask_right).double().mean())


# ---------------------------------------------------------------------------------------------
# Breakdown by phenomenon
# ---------------------------------------------------------------------------------------------


def _row(inter: torch.Tensor, union: torch.Tensor, pr_threshold: float) -> dict[str, float]:
    ious = iou_from_counts(inter, union)
    return {
        "n": int(inter.shape[0]),
        "overall_iou": overall_iou(inter, union),
        "mean_iou": mean_iou(ious),
        **precision_at(ious, (pr_threshold,)),
    }


def breakdown_by_tag(
    inter: torch.Tensor,
    union: torch.Tensor,
    tags: Sequence[Sequence[str]],
    pr_threshold: float = 0.5,
    *,
    category_only: bool = False,
) -> pd.DataFrame:
    """Metrics per phenomenon tag: one row for ``"all"`` and one per tag of ``PHENOMENA`` present.

    A sample with several tags counts in each of their rows. Columns: n, overall_iou, mean_iou,
    ``Pr@{pr_threshold}``. ``category_only`` adds a ``"category only"`` row: the expressions that
    name the category and nothing else ("the star"), the ones a category word alone resolves.
    """
    _check_vector("inter", inter)
    _check_vector("union", union, inter.shape[0])
    if len(tags) != inter.shape[0]:
        raise ValueError(f"got {len(tags)} tag tuples for {inter.shape[0]} samples")
    unknown = {t for sample_tags in tags for t in sample_tags} - set(PHENOMENA)
    if unknown:
        raise ValueError(f"unknown phenomenon tags {sorted(unknown)}; known: {PHENOMENA}")
    rows = {"all": _row(inter, union, pr_threshold)}
    alone = torch.tensor([tuple(t) == ("category",) for t in tags], dtype=torch.bool)
    if category_only and alone.any():
        rows["category only"] = _row(inter[alone], union[alone], pr_threshold)
    for tag in PHENOMENA:
        keep = torch.tensor([tag in sample_tags for sample_tags in tags], dtype=torch.bool)
        if keep.any():
            rows[tag] = _row(inter[keep], union[keep], pr_threshold)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "tag"
    return frame


def tag_record_metrics(by_tag: pd.DataFrame) -> dict[str, float]:
    """A run record's per-phenomenon metrics from a ``breakdown_by_tag`` table with its
    "category only" row (``engine.evaluate``'s ``by_tag``): ``overall_iou[<tag>]`` and
    ``n[<tag>]`` for every row but "all" (notebook 09's heatmap); none when no sample carries
    a tag (instance tasks)."""
    table = by_tag.drop(index="all")
    return {**{f"overall_iou[{t}]": float(v) for t, v in table["overall_iou"].items()},
            **{f"n[{t}]": float(v) for t, v in table["n"].items()}}


# ---------------------------------------------------------------------------------------------
# Accumulating over a split
# ---------------------------------------------------------------------------------------------


def intersection_union_at_thresholds(
    scores: torch.Tensor,
    gt: torch.Tensor,
    thresholds: Sequence[float],
    *,
    from_logits: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``I_i(t), U_i(t)`` of the mask ``scores > t`` for each threshold t (one pass per t).

    scores: ``(B, H, W)`` probabilities, or logits with ``from_logits`` (then compared with
    ``log(t / (1 - t))``, no sigmoid). gt: ``(B, H, W)`` bool. Returns two ``(B, T)`` int64.
    """
    if scores.ndim != 3 or scores.shape != gt.shape:
        raise ValueError(
            "scores and gt masks must both be (B, H, W) with the same shape, got "
            f"{tuple(scores.shape)} and {tuple(gt.shape)}"
        )
    inters, unions = [], []
    for t in thresholds:
        _check_threshold(t)
        cut = math.log(t / (1.0 - t)) if from_logits else t
        inter, union = mask_intersection_union(scores > cut, gt)
        inters.append(inter)
        unions.append(union)
    return torch.stack(inters, dim=1), torch.stack(unions, dim=1)


class SegmentationMeter:
    """Collects per-sample intersections and unions over a split, then summarises them.

    Masks are binarised at 0.5 (the primary threshold, reported unsuffixed) and at every extra
    threshold in ``thresholds`` (e.g. MCN's 0.35, reported as ``"overall_iou@0.35"`` ...), as
    the course's protocol asks. Box IoUs are kept when boxes are given, for Acc@0.5 and IE.
    """

    def __init__(
        self,
        thresholds: Sequence[float] = (PRIMARY_THRESHOLD,),
        pr_thresholds: Sequence[float] = PR_THRESHOLDS,
    ) -> None:
        extras = [t for t in thresholds if t != PRIMARY_THRESHOLD]
        self.thresholds = (PRIMARY_THRESHOLD, *dict.fromkeys(extras))  # primary first, unique
        for t in self.thresholds:
            _check_threshold(t)
        self.pr_thresholds = tuple(pr_thresholds)
        self.reset()

    def reset(self) -> None:
        self._inter: list[torch.Tensor] = []  # each (B, T) int64
        self._union: list[torch.Tensor] = []
        self._box_ious: list[torch.Tensor] = []  # each (B,) float64
        self._tags: list[tuple[str, ...]] = []

    def __len__(self) -> int:
        return len(self._tags)

    def update(
        self,
        scores: torch.Tensor,
        gt_masks: torch.Tensor,
        tags: Sequence[Sequence[str]] | None = None,
        pred_boxes: torch.Tensor | None = None,
        gt_boxes: torch.Tensor | None = None,
        *,
        from_logits: bool = True,
    ) -> None:
        """Add a batch: scores ``(B, H, W)`` logits (or probabilities with ``from_logits=False``),
        gt_masks ``(B, H, W)`` bool, optional tag tuples and ``(B, 4)`` xyxy boxes."""
        batch = scores.shape[0]
        if (pred_boxes is None) != (gt_boxes is None):
            raise ValueError("give both pred_boxes and gt_boxes, or neither")
        if len(self) and (pred_boxes is not None) != bool(self._box_ious):
            raise ValueError("boxes must be given in every update or in none")
        tags = [()] * batch if tags is None else [tuple(t) for t in tags]
        if len(tags) != batch:
            raise ValueError(f"got {len(tags)} tag tuples for a batch of {batch}")
        inter, union = intersection_union_at_thresholds(
            scores.detach(), gt_masks, self.thresholds, from_logits=from_logits
        )
        if pred_boxes is not None:
            ious = box_iou(pred_boxes, gt_boxes)
            _check_vector("box IoUs", ious, batch)
            self._box_ious.append(ious)
        self._inter.append(inter)
        self._union.append(union)
        self._tags.extend(tags)

    def _counts(self, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        if not len(self):
            raise ValueError("the meter holds no samples yet; call update() first")
        k = self.thresholds.index(t)
        return torch.cat(self._inter)[:, k], torch.cat(self._union)[:, k]

    def _mask_metrics(self, t: float) -> dict[str, float]:
        inter, union = self._counts(t)
        ious = iou_from_counts(inter, union)
        out = {"overall_iou": overall_iou(inter, union), "mean_iou": mean_iou(ious)}
        out.update(precision_at(ious, self.pr_thresholds))
        if self._box_ious:
            out["IE"] = inconsistency_error(torch.cat(self._box_ious), ious)
        return out

    def summary(self) -> dict[str, float]:
        """``n``, overall/mean IoU, Pr@X (and IE) at 0.5, the same suffixed ``@t`` for each extra
        threshold, and ``Acc@0.5`` when boxes were given."""
        out: dict[str, float] = {"n": len(self), **self._mask_metrics(PRIMARY_THRESHOLD)}
        for t in self.thresholds[1:]:
            out.update({f"{k}@{_fmt(t)}": v for k, v in self._mask_metrics(t).items()})
        if self._box_ious:
            out["Acc@0.5"] = accuracy_at(torch.cat(self._box_ious), 0.5)
        return out

    def per_sample(self) -> pd.DataFrame:
        """One row per sample: intersection, union, iou (suffixed ``@t`` for extra thresholds),
        box_iou when boxes were given, and tags."""
        columns: dict[str, object] = {}
        for t in self.thresholds:
            suffix = "" if t == PRIMARY_THRESHOLD else f"@{_fmt(t)}"
            inter, union = self._counts(t)
            columns[f"intersection{suffix}"] = inter.numpy()
            columns[f"union{suffix}"] = union.numpy()
            columns[f"iou{suffix}"] = iou_from_counts(inter, union).numpy()
        if self._box_ious:
            columns["box_iou"] = torch.cat(self._box_ious).numpy()
        columns["tags"] = list(self._tags)
        return pd.DataFrame(columns)

    def by_tag(self, threshold: float = PRIMARY_THRESHOLD, *, category_only: bool = False
               ) -> pd.DataFrame:
        """``breakdown_by_tag`` of the masks binarised at ``threshold`` (one of the meter's)."""
        if threshold not in self.thresholds:
            raise ValueError(
                f"threshold {threshold} was not collected; the meter has {self.thresholds}"
            )
        return breakdown_by_tag(*self._counts(threshold), self._tags,
                                category_only=category_only)


# ---------------------------------------------------------------------------------------------
# Choosing a threshold (validation only)
# ---------------------------------------------------------------------------------------------


def _pairs(
    probabilities: torch.Tensor | Iterable, gts: torch.Tensor | Iterable | None
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(probabilities, torch.Tensor):  # one (N, H, W) batch already in memory
        yield probabilities, gts
        return
    pairs = probabilities if gts is None else zip(probabilities, gts, strict=True)
    for probs, gt in pairs:
        if probs.ndim == 2:  # one (H, W) sample: images of different sizes come one at a time
            probs, gt = probs[None], gt[None]
        yield probs, gt


def choose_threshold(
    probabilities: torch.Tensor | Iterable,
    gts: torch.Tensor | Iterable | None = None,
    *,
    split: str,
    candidates: Sequence[float] = THRESHOLD_CANDIDATES,
) -> float:
    """The binarisation threshold ``argmax_t sum_i I_i(t) / sum_i U_i(t)`` on a validation split.

    Give probabilities and ground truths as two ``(N, H, W)`` tensors, as two aligned lists of
    ``(B, H, W)`` or ``(H, W)`` tensors (images of different sizes), or as one iterable of
    ``(probs, gts)`` batches with ``gts=None`` (a data loader: only the per-candidate sums are
    kept, so memory stays one batch). Ties go to the smallest candidate. ``split`` names where
    the data come from: a test split is refused.
    """
    if split.lower().startswith("test"):
        raise ValueError(
            f"thresholds are chosen on a validation split only, got split={split!r}. The "
            "official DMN evaluation swept the threshold on the evaluation split itself and we "
            "do not copy that: choose on 'val', report on test."
        )
    if len(candidates) == 0:
        raise ValueError("give at least one candidate threshold")
    inter_sum = torch.zeros(len(candidates), dtype=torch.float64)
    union_sum = torch.zeros(len(candidates), dtype=torch.float64)
    seen = 0
    for probs, gt in _pairs(probabilities, gts):
        inter, union = intersection_union_at_thresholds(probs, gt, candidates)  # (B, K) each
        inter_sum += inter.sum(dim=0).double()
        union_sum += union.sum(dim=0).double()
        seen += probs.shape[0]
    if seen == 0:
        raise ValueError("choose_threshold got no samples")
    scores = torch.where(union_sum > 0, inter_sum / union_sum.clamp(min=1.0), 0.0)  # (K,)
    return float(candidates[int(torch.argmax(scores))])


# ---------------------------------------------------------------------------------------------
# Instance segmentation (recurrent instance segmentation, notebook 08)
# ---------------------------------------------------------------------------------------------


def pairwise_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """IoU of every map of ``a (M, H, W)`` with every map of ``b (N, H, W)``:
    sum(a b) / (sum a + sum b - sum(a b)), an (M, N) matrix on the inputs' device. Binary masks
    give the mask IoU (0 where both are empty); maps in [0, 1] give the soft IoU of the RIS loss
    (``losses.soft_iou``). Float32, or float64 if either input is; computed outside autocast."""
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    x, y = a.flatten(1).to(dtype), b.flatten(1).to(dtype)
    with torch.autocast(x.device.type, enabled=False):  # sums of many pixels: full precision
        inter = x @ y.T
    union = x.sum(1)[:, None] + y.sum(1)[None, :] - inter
    return inter / union.clamp(min=eps)


def _mean_best_dice(iou: torch.Tensor) -> float:
    """BD from an IoU matrix: the mean over its rows of the best Dice = 2 IoU / (1 + IoU) of
    the same pair; 0 when either side has no mask."""
    if iou.numel() == 0:
        return 0.0
    return float((2 * iou / (1 + iou)).max(1).values.mean())


def best_dice(a: torch.Tensor, b: torch.Tensor) -> float:
    """BD(a, b) = (1 / M) sum_i max_j 2 |a_i ∩ b_j| / (|a_i| + |b_j|) (CVPPP's leaf benchmark,
    Scharr et al. 2016, used by Romera-Paredes & Torr); 0 when ``a`` or ``b`` has no mask."""
    return _mean_best_dice(pairwise_iou(a.double(), b.double()))


def _symmetric_best_dice(iou: torch.Tensor) -> float:
    return min(_mean_best_dice(iou), _mean_best_dice(iou.T))


def symmetric_best_dice(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """SBD = min(BD(pred, gt), BD(gt, pred)): an extra or a missed instance both lower it."""
    return _symmetric_best_dice(pairwise_iou(pred.double(), gt.double()))


def average_precision(scores: torch.Tensor, hits: torch.Tensor, num_positives: int) -> float:
    """Area under the precision-recall curve of detections ranked by ``scores`` (N,), ``hits``
    (N,) bool (a true positive), with ``num_positives`` ground-truth instances in all; the
    precision is made monotone (the envelope) and integrated over every recall step (PASCAL
    VOC from 2010, COCO's per-threshold AP without its 101-point sampling)."""
    if num_positives <= 0:
        raise ValueError("average precision needs at least one ground-truth instance")
    order = torch.argsort(scores.double(), descending=True, stable=True)
    tp = hits[order].double().cumsum(0)
    precision = tp / torch.arange(1, len(order) + 1, dtype=torch.float64)
    recall = tp / num_positives
    envelope = precision.flip(0).cummax(0).values.flip(0)
    steps = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
    return float((envelope * steps).sum())


class InstanceMeter:
    """Instance metrics over a split, image by image (notebook 08):

    - ``count_acc``: fraction of images whose number of emitted instances equals n;
    - ``abs_dic`` / ``dic``: mean |emitted - n| and mean (emitted - n) (CVPPP's |DiC|, DiC);
    - ``sbd``: mean symmetric best Dice of the emitted instances (CVPPP);
    - ``best_overlap``: mean over every ground-truth instance of its best IoU with an emitted
      one (0 if none is emitted): how well each object is covered;
    - ``ap@0.5``: AP at IoU 0.5 over every step's mask ranked by its confidence, each
      prediction a true positive if it overlaps a not yet taken instance of its image by
      IoU >= 0.5, in order of confidence (AP^r, Hariharan et al. 2014).

    ``update(masks (K, H, W) bool, scores (K,), emitted, targets (N, H, W) bool)``: ``masks`` are
    the masks of all K unrolled steps, the first ``emitted`` of them the prediction.
    """

    def __init__(self, iou_threshold: float = 0.5):
        self.iou_threshold = iou_threshold
        self.rows: list[dict[str, float]] = []
        self.scores: list[torch.Tensor] = []
        self.hits: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.rows)

    def update(self, masks: torch.Tensor, scores: torch.Tensor, emitted: int,
               targets: torch.Tensor) -> None:
        if masks.ndim != 3 or targets.ndim != 3 or masks.shape[1:] != targets.shape[1:]:
            raise ValueError(f"masks (K, H, W) and targets (N, H, W) must share H, W; got "
                             f"{tuple(masks.shape)} and {tuple(targets.shape)}")
        _check_vector("scores", scores, masks.shape[0])
        if not 0 <= emitted <= masks.shape[0]:
            raise ValueError(f"emitted must be in [0, {masks.shape[0]}], got {emitted}")
        n = targets.shape[0]
        iou = pairwise_iou(masks.cpu().double(), targets.cpu().double())  # (K, N)
        kept = iou[:emitted]  # the prediction's rows
        self.rows.append({"n": n, "emitted": emitted, "dic": emitted - n,
                          "sbd": _symmetric_best_dice(kept),
                          "best_overlap": (float(kept.max(0).values.mean()) if emitted and n
                                           else 0.0 if n else float("nan"))})
        taken = torch.zeros(n, dtype=torch.bool)
        hits = torch.zeros(masks.shape[0], dtype=torch.bool)
        for k in torch.argsort(scores.detach().cpu().double(), descending=True, stable=True):
            if n:
                free = torch.where(taken, -1.0, iou[k])
                j = int(free.argmax())
                if free[j] >= self.iou_threshold:
                    hits[k], taken[j] = True, True
        self.scores.append(scores.detach().cpu().double())
        self.hits.append(hits)

    def per_image(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def summary(self) -> dict[str, float]:
        if not self.rows:
            raise ValueError("no image was scored; call update() first")
        frame = self.per_image()
        positives = int(frame["n"].sum())
        return {
            "images": float(len(frame)),
            "count_acc": float((frame["dic"] == 0).mean()),
            "abs_dic": float(frame["dic"].abs().mean()),
            "dic": float(frame["dic"].mean()),
            "sbd": float(frame["sbd"].mean()),
            "best_overlap": float(frame["best_overlap"].mean()),
            f"ap@{_fmt(self.iou_threshold)}": (
                average_precision(torch.cat(self.scores), torch.cat(self.hits), positives)
                if positives else float("nan")),
        }
