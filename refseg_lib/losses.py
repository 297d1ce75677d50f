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

from refseg_lib.data.types import Batch
from refseg_lib.models.registry import ModelOutput


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
             s_b: float = 0.5, eps: float = 1e-6) -> torch.Tensor:
    """MCN's Consistency Energy Maximization (sec. 3.2, eqs. 5-9), averaged over the batch.

    energy_s (B, P_s) and energy_c (B, P_c): eq. 5's E_s = F_a^s W_s and E_c = F_a^c W_c over
    the RES and REC maps; features_s (B, P_s, d) and features_c (B, P_c, d): the attention
    features F_a^s, F_a^c. T_sc = s_w cos(f_i^s, f_j^c) + s_b (eq. 6; 0.5 and 0.5 map the
    cosine onto [0, 1]), clamped to [eps, 1] so that its log is finite.

    ``form="paper"``: eqs. 7-9, -sum_ij [log E'_s(i) + log E'_c(j) + log T(i, j)] with
    E' = softmax(E) (eq. 8's alpha is the softmax's normaliser), a sum of logs computed as
    log-softmaxes, never as the log of a product. ``form="code"``: the official code's
    -log(sum_ij E'_s(i) T(i, j) E'_c(j) + eps), the log of the expected consistency, computed
    as a log-sum-exp. The two differ; notebook 06 compares them.
    """
    if form not in CEM_FORMS:
        raise ValueError(f"form must be one of {CEM_FORMS}, got {form!r}")
    log_s, log_c = energy_s.log_softmax(-1), energy_c.log_softmax(-1)  # (B, P_s), (B, P_c)
    cos = F.normalize(features_s, dim=-1) @ F.normalize(features_c, dim=-1).transpose(1, 2)
    log_t = (s_w * cos + s_b).clamp(eps, 1.0).log()  # (B, P_s, P_c), eq. 6
    if form == "paper":  # eq. 9: every (i, j) pair, so each log-softmax is counted P times
        n_s, n_c = log_s.shape[-1], log_c.shape[-1]
        energy = n_c * log_s.sum(-1) + n_s * log_c.sum(-1) + log_t.sum((1, 2))
    else:
        joint = (log_s[:, :, None] + log_t + log_c[:, None, :]).flatten(1).logsumexp(-1)
        energy = torch.logaddexp(joint, joint.new_tensor(math.log(eps)))
    return -energy.mean()
