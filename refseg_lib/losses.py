"""Training losses, one function per paper term.

Every loss the engine uses has the signature ``loss_fn(output, batch) -> (loss, parts)``:
``output`` is the model's ``ModelOutput``, ``batch`` the ``Batch`` it was computed from,
``loss`` a scalar tensor to back-propagate and ``parts`` a dict of named floats for the logs
(MCN's joint loss, for instance, reports its box, segmentation and CEM terms separately).
"""

from __future__ import annotations

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
