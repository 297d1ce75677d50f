"""Scoring a model on a dataset (``evaluate``: every metric of the course, per split, per sample
and per phenomenon tag) and predicting mask probabilities (``predict``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from refseg_lib.data.types import Batch, ModelOutput
from refseg_lib.engine.runtime import (
    autocast_context,
    autocast_dtype,
    eval_mode,
    model_device,
    pick_device,
)
from refseg_lib.losses import resize_instances, resize_logits
from refseg_lib.metrics import PRIMARY_THRESHOLD, InstanceMeter, SegmentationMeter


@dataclass
class EvalResult:
    """Metrics of one split: ``summary`` (``SegmentationMeter.summary``: n, overall_iou,
    mean_iou, Pr@0.5..0.9, ``@t`` for extra thresholds), one row per sample, one per tag (with
    the "category only" row of ``metrics.breakdown_by_tag``)."""

    summary: dict[str, float]
    per_sample: pd.DataFrame
    by_tag: pd.DataFrame
    eval_time_s: float
    samples_per_s: float


def evaluate(model: nn.Module, dataset: Dataset, collate_fn: Callable[[list], Batch], *,
             batch_size: int = 32, thresholds: Sequence[float] = (PRIMARY_THRESHOLD,),
             device: str | torch.device | None = None, progress: bool = True,
             amp: str = "auto", num_workers: int = 0,
             refine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
             ) -> EvalResult:
    """Score ``model`` on every sample of ``dataset``, in order.

    The model runs in eval mode without gradients (its mode is restored afterwards), under
    the same autocast as training; its logits are resized to each mask and binarised at 0.5
    and at every extra threshold. ``device=None`` keeps the model where it is; a device moves
    it there. Box metrics (Acc@0.5, IE) are added when the model predicts boxes, instance
    metrics (``InstanceMeter``: count accuracy, |DiC|, SBD, best overlap, AP@0.5, against each
    sample's ``instance_masks``) when it emits instances (``ModelOutput.instances``,
    ``confidence`` and ``aux["emitted"]``, the count its stopping rule keeps). ``refine``
    maps (images, logits at mask size) to refined logits (``postprocess.crf_refine``).
    """
    device = model_device(model) if device is None else pick_device(device)
    model.to(device)
    dtype = autocast_dtype(amp, device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn,
                        num_workers=num_workers, generator=torch.Generator())
    meter = SegmentationMeter(thresholds)
    instances = InstanceMeter()
    ids: dict[str, list[str]] = {"sample_id": [], "image_id": [], "sentence": []}
    start = time.perf_counter()
    bar = tqdm(loader, desc="evaluate", disable=not progress, leave=False, unit="batch")
    with eval_mode(model), bar:
        for batch in bar:
            batch = batch.to(device, non_blocking=True)
            with autocast_context(device, dtype):
                output = model(batch.images, batch.tokens, batch.lengths)
            logits = resize_logits(output.mask_logits.float(), batch.masks.shape[-2:])
            if refine is not None:
                logits = refine(batch.images, logits)
            has_box = output.box is not None
            meter.update(logits, batch.masks, batch.tags,
                         pred_boxes=output.box.float() if has_box else None,
                         gt_boxes=batch.boxes if has_box else None)
            if output.instances is not None:
                _update_instances(instances, output, batch)
            ids["sample_id"] += batch.sample_ids
            ids["image_id"] += batch.image_ids
            ids["sentence"] += batch.sentences
    elapsed = time.perf_counter() - start
    if not len(meter):
        raise ValueError(f"cannot evaluate on an empty dataset ({dataset!r})")
    per_sample = pd.concat([pd.DataFrame(ids), meter.per_sample()], axis=1)
    summary = {**meter.summary(), **(instances.summary() if len(instances) else {})}
    return EvalResult(summary=summary, per_sample=per_sample,
                      by_tag=meter.by_tag(category_only=True), eval_time_s=elapsed,
                      samples_per_s=len(meter) / max(elapsed, 1e-9))


def _update_instances(meter: InstanceMeter, output: ModelOutput, batch: Batch) -> None:
    """Score each image's emitted instances, binarised at ``PRIMARY_THRESHOLD``."""
    cut = math.log(PRIMARY_THRESHOLD / (1 - PRIMARY_THRESHOLD))
    masks = resize_instances(output.instances.float(), batch.masks.shape[-2:]) > cut
    for b, targets in enumerate(batch.instance_masks):  # (B, K, H, W) bool
        meter.update(masks[b].cpu(), output.confidence[b].float().cpu(),
                     int(output.aux["emitted"][b]), targets.cpu())


def predict(model: nn.Module, images: torch.Tensor, tokens: torch.Tensor,
            lengths: torch.Tensor, *, amp: str = "auto") -> torch.Tensor:
    """Mask probabilities ``(B, H, W)`` at the resolution of ``images (B, 3, H, W)``.

    Runs on the model's device, in eval mode without gradients; returns a CPU float tensor.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    device = model_device(model)
    with eval_mode(model), autocast_context(device, autocast_dtype(amp, device)):
        output = model(images.to(device), tokens.to(device), lengths.to(device))
    logits = resize_logits(output.mask_logits.float(), images.shape[-2:])  # (B, H, W)
    return torch.sigmoid(logits).cpu()
