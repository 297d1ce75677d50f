"""The sample and batch types every dataset of the course yields (ShapeRef and REFER alike).

Conventions, shared by every dataset, transform, model and metric:

- ``image``: float32 ``(3, H, W)`` RGB in [0, 1], not normalised (a backbone normalises).
- ``mask``: bool ``(H, W)``, the referent's pixels.
- ``box``: float32 ``(4,)``, ``(x0, y0, x1, y1)`` in pixels with pixel ``(row, col)`` covering
  ``[col, col + 1) x [row, row + 1)``; the box of a mask is therefore
  ``(min col, min row, max col + 1, max row + 1)``, and a COCO ``[x, y, w, h]`` box is
  ``(x, y, x + w, y + h)``.
- ``instance_masks``: bool ``(N, H, W)``, every annotated object of the image;
  ``referent_index`` points at the referent among them.
- ``tags``: phenomenon tags of the expression (``PHENOMENA``), empty where unknown (REFER).

``ModelOutput`` is what every model returns; it lives here, below the models, the losses and
the engine, which all read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

PHENOMENA = ("category", "attribute", "size", "location", "ordinal", "relation")


@dataclass
class Sample:
    """One (image, referring expression) pair with its ground truth."""

    image: torch.Tensor  # (3, H, W) float in [0, 1]
    sentence: str
    mask: torch.Tensor  # (H, W) bool
    box: torch.Tensor  # (4,) float, x0 y0 x1 y1
    instance_masks: torch.Tensor  # (N, H, W) bool
    referent_index: int
    tags: tuple[str, ...] = ()
    image_id: str = ""
    sample_id: str = ""
    category: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        h, w = self.image.shape[-2:]
        if self.image.ndim != 3 or self.image.shape[0] != 3:
            raise ValueError(f"image must be (3, H, W), got {tuple(self.image.shape)}")
        if tuple(self.mask.shape) != (h, w):
            raise ValueError(f"mask {tuple(self.mask.shape)} does not match image {(h, w)}")
        if self.instance_masks.ndim != 3 or tuple(self.instance_masks.shape[1:]) != (h, w):
            raise ValueError(
                f"instance_masks must be (N, {h}, {w}), got {tuple(self.instance_masks.shape)}"
            )
        if tuple(self.box.shape) != (4,):
            raise ValueError(f"box must have shape (4,), got {tuple(self.box.shape)}")
        unknown = set(self.tags) - set(PHENOMENA)
        if unknown:
            raise ValueError(f"unknown phenomenon tags {sorted(unknown)}; known: {PHENOMENA}")

    def replace(self, **changes) -> Sample:
        return replace(self, **changes)


@dataclass
class Batch:
    """A collated list of samples: ``model(batch.images, batch.tokens, batch.lengths)``."""

    images: torch.Tensor  # (B, 3, H, W)
    tokens: torch.Tensor  # (B, L) long, padded with the vocabulary's pad index
    lengths: torch.Tensor  # (B,) long, number of real tokens (>= 1)
    masks: torch.Tensor  # (B, H, W) bool
    boxes: torch.Tensor  # (B, 4) float
    instance_masks: list[torch.Tensor]  # B x (N_i, H, W) bool
    referent_indices: torch.Tensor  # (B,) long
    sentences: list[str]
    tags: list[tuple[str, ...]]
    image_ids: list[str]
    sample_ids: list[str]

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Move the tensors (not the lists of strings) to ``device``."""
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return replace(
            self,
            images=move(self.images),
            tokens=move(self.tokens),
            lengths=move(self.lengths),
            masks=move(self.masks),
            boxes=move(self.boxes),
            instance_masks=[move(m) for m in self.instance_masks],
            referent_indices=move(self.referent_indices),
        )


def mask_to_box(mask: torch.Tensor) -> torch.Tensor:
    """Box ``(x0, y0, x1, y1)`` enclosing a bool ``(H, W)`` mask; zeros for an empty mask."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    if rows.numel() == 0:
        return torch.zeros(4)
    return torch.tensor(
        [cols[0].item(), rows[0].item(), cols[-1].item() + 1, rows[-1].item() + 1],
        dtype=torch.float32,
    )


@dataclass
class ModelOutput:
    """Named outputs; ``mask_logits`` always, the rest where a model has them."""

    mask_logits: torch.Tensor  # (B, h, w) logits of the referent's mask
    box: torch.Tensor | None = None  # (B, 4) xyxy pixels of the input image (REC heads)
    confidence: torch.Tensor | None = None  # (B,) or (B, K)
    # (B, K, h, w) logits, one per unrolled step; with confidence (B, K) and aux["emitted"] (B,)
    instances: torch.Tensor | None = None
    attention: dict[str, torch.Tensor] = field(default_factory=dict)  # maps for visualisation
    aux: dict[str, torch.Tensor] = field(default_factory=dict)  # model-specific loss inputs
