"""Geometric transforms that keep image, masks and box aligned, and the collate function.

Every transform maps a ``Sample`` to a ``Sample``: the image is resampled bilinearly, masks
by nearest neighbour, and the box by the same affine map as the pixels (it is the annotation,
so it is not recomputed from the resampled mask).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from refseg_lib.data.text import MAX_LENGTH, Vocabulary, pad_sequences
from refseg_lib.data.types import Batch, Sample


def _resample(sample: Sample, height: int, width: int) -> tuple[torch.Tensor, ...]:
    image = F.interpolate(sample.image[None], size=(height, width), mode="bilinear",
                          align_corners=False, antialias=True)[0].clamp(0, 1)
    masks = torch.cat([sample.mask[None], sample.instance_masks]).float()[None]
    masks = F.interpolate(masks, size=(height, width), mode="nearest")[0] > 0.5
    return image, masks[0], masks[1:]


class Resize:
    """Stretch to ``size`` x ``size`` (CMSA-style square input; changes the aspect ratio)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, sample: Sample) -> Sample:
        h, w = sample.image.shape[-2:]
        image, mask, instances = _resample(sample, self.size, self.size)
        scale = torch.tensor([self.size / w, self.size / h] * 2)
        meta = {**sample.meta, "original_size": (h, w)}
        return sample.replace(image=image, mask=mask, instance_masks=instances,
                              box=sample.box * scale, meta=meta)


class Letterbox:
    """Scale the longest side to ``size`` keeping the aspect ratio, then pad to a square.

    The image is centred on a ``fill``-grey canvas (MCN's YOLOv3 letterbox at 416 px; DMN
    keeps the aspect ratio with the longest side at 512). ``meta["letterbox"]`` holds
    ``(scale, pad_x, pad_y)`` so that predictions can be mapped back to the original image.
    """

    def __init__(self, size: int, fill: float = 0.5):
        self.size, self.fill = size, fill

    def __call__(self, sample: Sample) -> Sample:
        h, w = sample.image.shape[-2:]
        scale = self.size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        image, mask, instances = _resample(sample, nh, nw)
        top, left = (self.size - nh) // 2, (self.size - nw) // 2
        canvas = torch.full((3, self.size, self.size), self.fill)
        canvas[:, top:top + nh, left:left + nw] = image
        padded = torch.zeros((1 + len(instances), self.size, self.size), dtype=torch.bool)
        padded[:, top:top + nh, left:left + nw] = torch.cat([mask[None], instances])
        box = sample.box * torch.tensor([nw / w, nh / h] * 2) + torch.tensor([left, top] * 2)
        meta = {**sample.meta, "original_size": (h, w), "letterbox": (scale, left, top)}
        return sample.replace(image=canvas, mask=padded[0], instance_masks=padded[1:],
                              box=box, meta=meta)


class Collate:
    """Stack samples of equal image size into a ``Batch``, encoding sentences with ``vocabulary``.

    ``max_length`` defaults to the dataset's convention (``MAX_LENGTH``), 20 if unknown.
    """

    def __init__(self, vocabulary: Vocabulary, max_length: int | None = None,
                 dataset: str = "shapes"):
        self.vocabulary = vocabulary
        self.max_length = max_length or MAX_LENGTH.get(dataset, 20)

    def __call__(self, samples: list[Sample]) -> Batch:
        sizes = {tuple(s.image.shape) for s in samples}
        if len(sizes) != 1:
            raise ValueError(
                f"cannot batch images of different sizes {sorted(sizes)}: give the dataset a "
                "transform such as Resize(size) or Letterbox(size)"
            )
        tokens, lengths = pad_sequences(
            [self.vocabulary.encode(s.sentence, self.max_length) for s in samples]
        )
        return Batch(
            images=torch.stack([s.image for s in samples]),
            tokens=tokens,
            lengths=lengths,
            masks=torch.stack([s.mask for s in samples]),
            boxes=torch.stack([s.box.float() for s in samples]),
            instance_masks=[s.instance_masks for s in samples],
            referent_indices=torch.tensor([s.referent_index for s in samples]),
            sentences=[s.sentence for s in samples],
            tags=[s.tags for s in samples],
            image_ids=[s.image_id for s in samples],
            sample_ids=[s.sample_id for s in samples],
        )
