"""Training losses, one function per paper term.

Every loss the engine uses has the signature ``loss_fn(output, batch) -> (loss, parts)``:
``output`` is the model's ``ModelOutput``, ``batch`` the ``Batch`` it was computed from,
``loss`` a scalar tensor to back-propagate and ``parts`` a dict of named floats for the logs
(MCN's joint loss, for instance, reports its box, segmentation and CEM terms separately).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from refseg_lib.data.types import Batch, ModelOutput
from refseg_lib.metrics import pairwise_iou


def resize_logits(logits: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Resize mask logits ``(B, h, w)`` to ``size = (H, W)`` bilinearly (align_corners=False).

    Models predict at their own stride (CMSA and MCN at 1/8, DMN at full size); this is the one
    place where a prediction is brought to the resolution of the mask it is scored against.
    Logits are interpolated (not probabilities), as the official DMN and CMSA code do.
    """
    if logits.ndim != 3:
        raise ValueError(f"mask logits must be (B, h, w), got shape {tuple(logits.shape)}")
    size = (int(size[0]), int(size[1]))
    if tuple(logits.shape[-2:]) == size:
        return logits
    resized = F.interpolate(logits[:, None], size=size, mode="bilinear", align_corners=False)
    return resized[:, 0]  # (B, H, W)


def resize_instances(instances: torch.Tensor, size: tuple[int, int] | torch.Size
                     ) -> torch.Tensor:
    """Per-step instance logits (B, K, h, w) resized to ``size`` as ``resize_logits`` does."""
    batch, steps = instances.shape[:2]
    return resize_logits(instances.flatten(0, 1), size).view(batch, steps, *size)


def mask_bce(output: ModelOutput, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Pixel-wise binary cross-entropy with logits, averaged over all pixels of the batch.

    ``L = -(1 / BHW) sum_{b,i,j} [m log sigmoid(s) + (1 - m) log(1 - sigmoid(s))]`` with ``s``
    the logits resized to the mask and ``m`` the referent mask. The segmentation loss of
    DMN (BCEWithLogits), CMSA (sigmoid cross-entropy; its code sums over the 320^2 map,
    which only rescales the learning rate) and the LSTM-CNN baseline (Hu et al.).
    Computed in float32 whatever the autocast dtype.
    """
    masks = batch.masks  # (B, H, W) bool
    logits = resize_logits(output.mask_logits.float(), masks.shape[-2:])  # (B, H, W)
    loss = F.binary_cross_entropy_with_logits(logits, masks.to(logits.dtype))
    return loss, {"bce": float(loss.detach())}


CEM_FORMS = ("paper", "code")


def cem_loss(energy_s: torch.Tensor, energy_c: torch.Tensor, features_s: torch.Tensor,
             features_c: torch.Tensor, *, form: str = "paper", s_w: float = 0.5,
             s_b: float = 0.5, eps: float = 1e-6, per_pair: bool = False) -> torch.Tensor:
    """MCN's Consistency Energy Maximization (sec. 3.2, eqs. 5-9), averaged over the batch.

    energy_s (B, P_s) and energy_c (B, P_c): eq. 5's E_s = F_a^s W_s and E_c = F_a^c W_c over
    the RES and REC maps; features_s (B, P_s, d) and features_c (B, P_c, d): the attention
    features F_a^s, F_a^c. T_sc = s_w cos(f_i^s, f_j^c) + s_b (eq. 6; 0.5 and 0.5 map the
    cosine onto [0, 1]), clamped to [eps, 1] so that its log is finite.

    ``form="paper"``: eqs. 7-9, -sum_ij [log E'_s(i) + log E'_c(j) + log T(i, j)] with
    E' = softmax(E) (eq. 8's alpha is the softmax's normaliser), a sum of logs computed as
    log-softmaxes, never as the log of a product. ``form="code"``: the official code's
    -log(sum_ij E'_s(i) T(i, j) E'_c(j) + eps), the log of the expected consistency, computed
    as a log-sum-exp. The two differ; notebook 06b compares them. ``per_pair`` divides the
    paper's sum by its P_s P_c terms (same minimiser, on the scale of the other losses of eq. 12;
    MCN trains with it).
    """
    if form not in CEM_FORMS:
        raise ValueError(f"form must be one of {CEM_FORMS}, got {form!r}")
    log_s, log_c = energy_s.log_softmax(-1), energy_c.log_softmax(-1)  # (B, P_s), (B, P_c)
    cos = F.normalize(features_s, dim=-1) @ F.normalize(features_c, dim=-1).transpose(1, 2)
    log_t = (s_w * cos + s_b).clamp(eps, 1.0).log()  # (B, P_s, P_c), eq. 6
    if form == "paper":  # eq. 9: every (i, j) pair, so each log-softmax is counted P times
        n_s, n_c = log_s.shape[-1], log_c.shape[-1]
        energy = n_c * log_s.sum(-1) + n_s * log_c.sum(-1) + log_t.sum((1, 2))
        if per_pair:
            energy = energy / (n_s * n_c)
    else:
        joint = (log_s[:, :, None] + log_t + log_c[:, None, :]).flatten(1).logsumexp(-1)
        energy = torch.logaddexp(joint, joint.new_tensor(math.log(eps)))
    return -energy.mean()


def downsampled_mask_bce(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """MCN's eq. (3): BCE of the logits (B, h, w) against the ground truth brought down to
    (h, w) (area averaging: the fraction of each cell the referent covers), summed over the map
    as the paper writes it, averaged over the batch. In float32."""
    logits = logits.float()
    target = F.interpolate(masks[:, None].float(), size=logits.shape[-2:], mode="area")[:, 0]
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return loss.sum((1, 2)).mean()


def rec_loss(raw: torch.Tensor, gt_boxes: torch.Tensor, anchors: torch.Tensor, stride: int,
             image_size: tuple[int, int], ignore_iou: float = 0.5
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """MCN's eq. (4), the YOLOv3 regression loss, summed over the map's anchors (h1 x w1 x N),
    averaged over the batch. In float32.

    raw (B, A, 5, h, w): (t_x, t_y, t_w, t_h, t_o) per anchor and cell (``nn.anchors``);
    gt_boxes (B, 4) xyxy pixels, one referent per sample. The referent's positive is the cell
    holding its centre and the anchor of best shape IoU (YOLOv3). Terms, as in the official
    code: BCE of sigmoid(t_x, t_y) against the centre's offset in its cell, smooth-L1 of
    (t_w, t_h) against log(w / w_a, h / h_a), both weighted by 2 - wh / (W H) (small boxes
    count more); BCE of the scores against 1 at the positive and 0 elsewhere, except anchors
    whose decoded box already overlaps the referent by IoU > ``ignore_iou`` (not penalised).
    The official code also halves the w/h term; we keep the paper's plain smooth-L1 (beta 1).
    """
    from refseg_lib.metrics import box_intersection_union
    from refseg_lib.nn.anchors import decode_boxes, wh_iou

    raw, anchors, gt = raw.float(), anchors.float().to(raw.device), gt_boxes.float()
    batch, num_anchors, _, h, w = raw.shape
    size = (gt[:, 2:] - gt[:, :2]).clamp(min=1.0)  # (B, 2) w, h
    centre = (gt[:, :2] + gt[:, 2:]) / 2 / stride  # (B, 2) in cells
    col = centre[:, 0].floor().long().clamp(0, w - 1)
    row = centre[:, 1].floor().long().clamp(0, h - 1)
    anchor = wh_iou(size, anchors).argmax(1)  # (B,)
    b = torch.arange(batch, device=raw.device)
    positive = raw[b, anchor, :, row, col]  # (B, 5)
    weight = 2.0 - size.prod(-1) / (image_size[0] * image_size[1])
    offset = (centre - torch.stack([col, row], -1)).clamp(0, 1)
    l_xy = F.binary_cross_entropy_with_logits(positive[:, :2], offset, reduction="none").sum(1)
    l_wh = F.smooth_l1_loss(positive[:, 2:4], (size / anchors[anchor]).log(),
                            reduction="none").sum(1)
    boxes, logits = decode_boxes(raw.detach(), anchors, stride)  # (B, A, h, w, 4), (B, A, h, w)
    inter, union = box_intersection_union(boxes.reshape(-1, 4),
                                          gt.repeat_interleave(num_anchors * h * w, 0))
    overlap = torch.where(union > 0, inter / union.clamp(min=1e-12), 0.0)  # on the device
    target = torch.zeros_like(logits)
    target[b, anchor, row, col] = 1.0
    counted = (overlap.reshape(logits.shape) <= ignore_iou) | target.bool()
    l_conf = (F.binary_cross_entropy_with_logits(raw[:, :, 4], target, reduction="none")
              * counted).sum((1, 2, 3))
    l_box = weight * (l_xy + l_wh)
    return (l_box + l_conf).mean(), {"rec_box": float(l_box.detach().mean()),
                                     "rec_conf": float(l_conf.detach().mean())}


# Romera-Paredes & Torr (ECCV 2016), sec. 3.3: the matching loss of recurrent instance
# segmentation. "paper": the printed loss, confidences against [t <= n] by step index;
# "code": the official Torch7 code (bernard24/RIS), whose matching cost also holds
# lambda BCE(s_t, 1) and whose confidence targets are "matched" / "not matched".
RIS_FORMS = ("paper", "code")


def soft_iou(predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft IoU of every predicted map (T, H, W) in [0, 1] with every target (N, H, W):
    sum(y g) / (sum y + sum g - sum(y g)), a (T, N) matrix (the paper's f_IoU); the same
    computation as the metrics' ``pairwise_iou``, differentiable."""
    return pairwise_iou(predicted, targets)


def ris_loss(predicted: torch.Tensor, score_logits: torch.Tensor, targets: torch.Tensor, *,
             weight: float = 1.0, form: str = "paper"
             ) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The RIS loss of one image and the matching it used.

    predicted (T, H, W): the masks emitted at steps t = 1..T, in [0, 1]; score_logits (T,):
    the logits z_t of their confidences s_t = sigmoid(z_t); targets (N, H, W): the
    ground-truth instances. With delta the
    assignment of steps to instances found by the Hungarian algorithm
    (``scipy.optimize.linear_sum_assignment``; T < N leaves instances unmatched, T > N steps):

        loss = [ -sum_(t, j) in delta f_IoU(Y_t, G_j) + weight sum_t BCE(s_t, target_t) ] / T

    and target_t = [t <= N] in both forms. ``form="paper"``: the sum printed in sec. 3.3,
    delta minimises -IoU over every step. ``form="code"``: the official code's
    ``MatchCriterion`` (https://github.com/bernard24/RIS at 8a3ba934, ``plants_learning/`` and
    ``people_learning/``): only the first min(T, N) steps may be matched, each to an
    instance, by the cost -IoU + weight BCE(s_t, 1) (the same for every instance of a step, so
    -IoU decides); a step after the N-th gets BCE(s_t, 0). Dividing by T (as the official
    ``experiment.lua`` does with its loss) keeps the scale the
    same when the curriculum changes T. Returns (loss, [(step, instance), ...]).
    """
    from scipy.optimize import linear_sum_assignment

    if form not in RIS_FORMS:
        raise ValueError(f"form must be one of {RIS_FORMS}, got {form!r}")
    if predicted.shape[0] != score_logits.shape[0]:
        raise ValueError(f"{predicted.shape[0]} masks but {score_logits.shape[0]} confidences")
    steps, count = predicted.shape[0], targets.shape[0]
    iou = soft_iou(predicted, targets)  # (T, N)
    z = score_logits.float()
    bce = F.binary_cross_entropy_with_logits
    positive = bce(z, torch.ones_like(z), reduction="none")  # (T,) BCE(s_t, 1)
    cost = -iou
    if form == "code":  # the first min(T, N) steps, in order, are the ones matched
        cost = (cost + weight * positive[:, None])[:min(steps, count)]
    rows, cols = [], []
    if count:
        found = linear_sum_assignment(cost.detach().cpu().double().numpy())
        rows, cols = found[0].tolist(), found[1].tolist()
    labels = torch.arange(steps, device=z.device) < count
    confidence = bce(z, labels.float(), reduction="sum")
    overlap = iou[rows, cols].sum()
    return (-overlap + weight * confidence) / steps, list(zip(rows, cols, strict=True))
