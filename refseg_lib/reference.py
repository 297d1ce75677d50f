"""Reference predictors: what a benchmark gives away, and what a resolution allows.

Floors, untrained heuristics that read the ground-truth instances of a ShapeRef scene:

- ``"largest object"``: the biggest object of the image, whatever the sentence says (how much
  a salient-object prior scores, as DMN's "Only VM" asks of RefCOCO);
- ``"category reader"``: the biggest object of the category the expression names (how much
  the head noun alone scores, without attributes, locations or relations);

and the ceiling ``"resolver"``, which parses the expression and picks the referent in the
symbolic scene (100% by construction: the expressions are unambiguous).

``stride_ceiling``: the best overall IoU any model whose mask comes at ``stride`` can reach,
measured with a perfect predictor at that stride: the true mask averaged over each
``stride x stride`` cell, brought back to the image by bilinear interpolation (as the models'
logits are) and thresholded at 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from refseg_lib.data import build_dataset
from refseg_lib.data.scene import Scene
from refseg_lib.data.shapes_language import parse_expression, resolve
from refseg_lib.data.types import Sample
from refseg_lib.metrics import PRIMARY_THRESHOLD, SegmentationMeter, mask_intersection_union

REFERENCE_PREDICTORS = ("largest object", "category reader", "resolver")
# RefCOCO's referent sizes, the target of ShapeRef's geometry: the referent's box area over the
# image area, quantiles over the expressions of a split, from the official annotations
# (refs(unc).p / refs(umd).p boxes, instances.json image sizes); the 10,834 expressions of
# RefCOCO (UNC) val, its testA and testB, and G-Ref (UMD) val.
REFCOCO_BOX_AREA = pd.DataFrame(
    {"p10": [0.065, None, None, None], "median": [0.138, 0.154, 0.132, 0.127],
     "p90": [0.386, None, None, None]},
    index=pd.Index(["RefCOCO val", "RefCOCO testA", "RefCOCO testB", "G-Ref (UMD) val"],
                   name="split"))
STRIDES = (1, 2, 4, 8, 16, 32)


def reference_mask(kind: str, sample: Sample, scene: Scene) -> torch.Tensor:
    """The (H, W) bool mask that the reference predictor ``kind`` answers for ``sample``."""
    areas = sample.instance_masks.flatten(1).sum(1)  # (N,) pixels of each object
    if kind == "largest object":
        return sample.instance_masks[int(areas.argmax())]
    if kind == "category reader":
        wanted = parse_expression(sample.sentence).head.category
        same = torch.tensor([o.category == wanted for o in scene.objects])
        return sample.instance_masks[int(torch.where(same, areas, -1).argmax())]
    if kind == "resolver":
        return sample.instance_masks[resolve(scene, sample.sentence)]
    raise ValueError(f"unknown reference predictor {kind!r}; choose one of "
                     f"{', '.join(REFERENCE_PREDICTORS)}")


def mask_box(mask: torch.Tensor) -> torch.Tensor:
    """The (4,) xyxy box of a non-empty (H, W) bool mask, in ``Sample.box``'s convention."""
    rows, cols = torch.where(mask)
    return torch.stack([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]).float()


def reference_meters(split: str = "val", *, style: str = "refshape", image_size: int = 64,
                     num_samples: int = 300, seed: int = 0,
                     kinds: Sequence[str] = REFERENCE_PREDICTORS,
                     thresholds: Sequence[float] = (PRIMARY_THRESHOLD,)
                     ) -> dict[str, SegmentationMeter]:
    """A ``SegmentationMeter`` per predictor over the first ``num_samples`` samples of a
    ShapeRef split, masks and boxes (the answer's box) scored as a model's are."""
    meters = {k: SegmentationMeter(thresholds) for k in kinds}
    dataset = build_dataset("shapes", split=split, style=style, image_size=image_size,
                            seed=seed)
    for i in range(min(num_samples, len(dataset))):
        sample, scene = dataset[i], dataset.scene(i)
        for kind in kinds:
            answer = reference_mask(kind, sample, scene)
            meters[kind].update(answer[None].float(), sample.mask[None], [sample.tags],
                                pred_boxes=mask_box(answer)[None], gt_boxes=sample.box[None],
                                from_logits=False)
    return meters


def reference_metrics(splits: Sequence[str] = ("val",), *, style: str = "refshape",
                      image_size: int = 64, num_samples: int = 300, seed: int = 0,
                      kinds: Sequence[str] = REFERENCE_PREDICTORS) -> pd.DataFrame:
    """``SegmentationMeter.summary`` of each predictor on the first ``num_samples`` ShapeRef
    samples of each split: one row per (predictor, split)."""
    meters = {split: reference_meters(split, style=style, image_size=image_size,
                                      num_samples=num_samples, seed=seed, kinds=kinds)
              for split in splits}
    table = pd.DataFrame({(kind, split): meters[split][kind].summary()
                          for kind in kinds for split in splits}).T
    table.index.names = ["predictor", "split"]
    return table


def perfect_at_stride(masks: torch.Tensor, stride: int) -> torch.Tensor:
    """The best masks (B, H, W) bool a model predicting at ``stride`` can give for ``masks``
    (B, H, W) bool: each cell's foreground fraction, upsampled bilinearly, above 0.5. Where
    ``stride`` does not divide the side, the map has ceil(side / stride) cells (as a padded
    backbone's) and each cell averages its share of the mask (adaptive pooling)."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be (B, H, W), got {tuple(masks.shape)}")
    height, width = masks.shape[-2:]
    cells = (math.ceil(height / stride), math.ceil(width / stride))  # a backbone's map size
    fraction = F.adaptive_avg_pool2d(masks[:, None].float(), cells)  # (B, 1, H/s, W/s)
    up = F.interpolate(fraction, size=(height, width), mode="bilinear", align_corners=False)
    return up[:, 0] > PRIMARY_THRESHOLD


def stride_ceiling(masks: torch.Tensor, stride: int) -> float:
    """Overall IoU of ``perfect_at_stride(masks, stride)`` against ``masks`` (B, H, W)."""
    inter, union = mask_intersection_union(perfect_at_stride(masks, stride), masks)
    return float(inter.sum() / union.sum())


def box_area_fractions(split: str = "val", *, style: str = "refshape", image_size: int = 64,
                       num_samples: int = 500, seed: int = 0) -> pd.Series:
    """The fraction of the image the referent's box covers, for the first ``num_samples``
    samples of a ShapeRef split (RefCOCO's referents: a median 13.8% on val)."""
    dataset = build_dataset("shapes", split=split, style=style, image_size=image_size,
                            seed=seed)
    boxes = torch.stack([dataset[i].box for i in range(min(num_samples, len(dataset)))])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / image_size ** 2
    return pd.Series(areas.numpy(), name="box area fraction", dtype=float)


def stride_ceilings(split: str = "val", *, style: str = "refshape", image_size: int = 64,
                    num_samples: int = 500, seed: int = 0,
                    strides: Sequence[int] = STRIDES) -> pd.Series:
    """``stride_ceiling`` of the referents of the first ``num_samples`` samples of a ShapeRef
    split, for each stride (indexed by stride)."""
    dataset = build_dataset("shapes", split=split, style=style, image_size=image_size,
                            seed=seed)
    masks = torch.stack([dataset[i].mask for i in range(min(num_samples, len(dataset)))])
    return pd.Series({s: stride_ceiling(masks, s) for s in strides}, name="overall IoU",
                     dtype=float).rename_axis("stride")
